"""`newswatch run --role group` (issue 16): real grouper processes on a real Postgres, the
leader killed with SIGKILL mid-stream several times; a standby takes over each time.

Articles are stored as fetch workers store them (store_batch without grouping, then NOTIFY
newswatch_articles). After the drain every article is grouped, each by exactly one batch, and
the events and their members are those of the single-process pipeline over the same
articles in the same order.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, text
from sqlmodel import Session

from newswatch.cli import main
from newswatch.config import FileConfig, Settings
from newswatch.pipeline import Pipeline
from newswatch.scaled.grouper import Grouper, GrouperOptions, NotScalable
from newswatch.shared_types import ParsedEntry
from newswatch.store.articles import ensure_sources, store_batch
from newswatch.store.db import make_engine, session_scope, upgrade
from newswatch.store.grouper_lease import (
    ARTICLES_CHANNEL,
    Deposed,
    bump_epoch,
    join_article_writers,
    notify,
    read_lease,
    ungrouped_articles,
)
from newswatch.storing_sink import StoringSink
from tests.conftest import SHARED_DATA, empty_database, shared_corpus
from tests.reliability.processes import Newswatch, wait_for
from tests.reliability.scaled_support import grouping_of

ARTICLES = 2400  # of the UCI headlines corpus, in publication order
CHUNK = 60  # articles stored per transaction, as a fetch worker's batch
GROUPER_BATCH = 25
KILLS = 3
DRAIN_SECONDS = 600


def _entries() -> list[tuple[str, ParsedEntry]]:
    path = shared_corpus(SHARED_DATA / "grouping" / "uci-headlines-dev.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows.sort(key=lambda r: (r["published"], r["id"]))
    return [
        (
            r["source"] or "unknown",
            ParsedEntry(
                url=r["url"] or f"https://example.org/{r['id']}",
                guid=r["id"],
                title=r["title"],
                text=r["text"] or None,
                # Dated in the past: each article counts at its publication time in both
                # stores, whenever it was stored.
                published=datetime.fromisoformat(r["published"].replace("Z", "+00:00")),
            ),
        )
        for r in rows[:ARTICLES]
    ]


def _chunks(entries: list[tuple[str, ParsedEntry]]) -> Iterator[list[tuple[str, ParsedEntry]]]:
    for start in range(0, len(entries), CHUNK):
        yield entries[start : start + CHUNK]


@pytest.fixture
def pg_urls(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two empty Postgres schemas: the scaled store and the single-process reference."""
    with (
        empty_database("postgres", tmp_path) as scaled,
        empty_database("postgres", tmp_path) as reference,
    ):
        yield scaled, reference


def _migrated(url: str) -> Engine:
    engine = make_engine(url)
    upgrade(engine)
    return engine


def store_as_fetch_worker(engine: Engine, chunk: list[tuple[str, ParsedEntry]]) -> None:
    """What a fetch worker writes: articles and sightings, no event; then the wake-up."""
    with session_scope(engine) as session:
        sources = ensure_sources(session, [name for name, _e in chunk], origin="config")
        join_article_writers(session)
        store_batch(session, [(sources[name], entry) for name, entry in chunk])
        notify(session, ARTICLES_CHANNEL)


def single_process(engine: Engine, entries: list[tuple[str, ParsedEntry]]) -> None:
    """The same chunks through the single-process pipeline (grouping as it stores)."""
    pipeline = Pipeline(engine, FileConfig(), Settings(), alerts=False)
    for chunk in _chunks(entries):
        with session_scope(engine) as session:
            sources = ensure_sources(session, [name for name, _e in chunk], origin="config")
            pipeline.ingest_jobs(session, [(sources[name], [entry]) for name, entry in chunk])


def _count(engine: Engine, query: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(query)).scalar_one())


def _grouped_at_least(engine: Engine, target: int, groupers: list[Newswatch]) -> bool:
    """Whether `target` articles are grouped; fails at once if a grouper died on its own."""
    for g in groupers:
        assert g.proc is not None
        if g.proc.poll() is not None:
            raise AssertionError(f"{g.log_path.name} exited: {g.log_text()[-3000:]}")
    return _count(engine, "SELECT count(*) FROM articles WHERE event_id IS NOT NULL") >= target


def _leader_pid(engine: Engine) -> int | None:
    with session_scope(engine) as session:
        lease = read_lease(session)
    return None if lease is None else int(lease.holder.rsplit(":", 1)[1])


@pytest.mark.parametrize("grouped_before", [0, 600], ids=["empty", "prefilled"])
def test_killed_leaders_leave_the_events_of_one_uninterrupted_grouper(
    pg_urls: tuple[str, str], tmp_path: Path, grouped_before: int
) -> None:
    """`prefilled`: the first articles were grouped by a single process before; the first
    leader restores them (as a restarted single process would), and standbys started after
    later merges must restore that same window, not the store's current placement."""
    scaled_url, reference_url = pg_urls
    entries = _entries()
    scaled, reference = _migrated(scaled_url), _migrated(reference_url)
    # Both stores: the first articles through one single process (then stopped).
    single_process(scaled, entries[:grouped_before])
    single_process(reference, entries[:grouped_before])
    grouped_by_single_process = _count(scaled, "SELECT count(*) FROM articles")
    entries_left = entries[grouped_before:]
    env = dict(os.environ) | {
        "DATABASE_URL": scaled_url,
        "NEWSWATCH_GROUPER_BATCH": str(GROUPER_BATCH),
        "NEWSWATCH_GROUPER_POLL_SECONDS": "0.5",
        "NEWSWATCH_LOG_FORMAT": "json",
    }
    env.pop("NEWSWATCH_CONFIG", None)
    chunks = list(_chunks(entries_left))
    half = len(chunks) // 2
    for chunk in chunks[:half]:
        store_as_fetch_worker(scaled, chunk)
    groupers = [
        Newswatch(["run", "--role", "group"], env, tmp_path / f"grouper{n}.log").start()
        for n in range(2)
    ]
    killed: list[int] = []
    try:
        stored = half
        for kill in range(KILLS):
            # Wait until the current leader has grouped some more, then kill it mid-stream.
            target = grouped_before + (kill + 1) * len(entries_left) // (KILLS + 2)
            wait_for(
                lambda t=target: _grouped_at_least(scaled, t, groupers),
                DRAIN_SECONDS,
                f"{target} articles grouped",
            )
            pid = _leader_pid(scaled)
            leader = next(g for g in groupers if g.pid == pid)
            leader.signal(signal.SIGKILL)
            leader.wait(30)
            killed.append(pid)  # type: ignore[arg-type]
            groupers.remove(leader)
            n = len(killed) + 1
            groupers.append(
                Newswatch(["run", "--role", "group"], env, tmp_path / f"grouper{n}.log").start()
            )
            # More articles come while the standby takes over.
            for chunk in chunks[stored : stored + (len(chunks) - half) // KILLS]:
                store_as_fetch_worker(scaled, chunk)
            stored += (len(chunks) - half) // KILLS
        for chunk in chunks[stored:]:
            store_as_fetch_worker(scaled, chunk)
        wait_for(
            lambda: _grouped_at_least(
                scaled, _count(scaled, "SELECT count(*) FROM articles"), groupers
            ),
            DRAIN_SECONDS,
            "every article grouped",
        )
        leader_after = _leader_pid(scaled)
        logs = {g.log_path.name: g.log_text() for g in groupers}
    finally:
        for g in groupers:
            g.stop()
    assert leader_after not in killed
    with session_scope(scaled) as session:
        lease = read_lease(session)
    assert lease is not None and lease.epoch >= KILLS + 1
    # Each article grouped by exactly one logged batch: no double writes.
    with scaled.connect() as conn:
        logged = [
            i
            for (ids,) in conn.execute(text("SELECT article_ids FROM grouper_batches"))
            for i in ids
        ]
    assert sorted(logged) == sorted(set(logged))
    assert len(logged) == (
        _count(scaled, "SELECT count(*) FROM articles") - grouped_by_single_process
    )
    for name, log in logs.items():
        assert "grouper.diverged" not in log, name
        assert "Traceback" not in log, (name, log[-3000:])
    # The reference: a second single process (its window restored at its first write, as
    # the first grouper restored it) over the rest, never interrupted.
    single_process(reference, entries_left)
    got, want = grouping_of(scaled), grouping_of(reference)
    assert len(got[0]) == len(want[0]) > ARTICLES * 0.9
    assert got[0] == want[0]
    assert got[1] == want[1]
    assert len(got[1]) < len(got[0])  # events grouped several reports
    scaled.dispose()
    reference.dispose()


def test_a_deposed_grouper_writes_nothing(pg_urls: tuple[str, str]) -> None:
    url, _ = pg_urls
    engine = _migrated(url)
    entries = _entries()[:CHUNK]
    store_as_fetch_worker(engine, entries)
    grouper = Grouper(engine, FileConfig(), Settings(), GrouperOptions(batch=GROUPER_BATCH))
    grouper.state = grouper._build()
    grouper.locked.set()  # as if its lock thread got the lock
    grouper._lock_conn = None
    from newswatch.store.grouper_lease import take_lease

    with session_scope(engine) as session:
        grouper.epoch = take_lease(session, "test:1")
    assert grouper.group_batch() == GROUPER_BATCH  # it leads: a batch goes through
    with session_scope(engine) as session:
        bump_epoch(session)  # a successor took over
    before = grouping_of(engine)
    batches = _count(engine, "SELECT count(*) FROM grouper_batches")
    with pytest.raises(Deposed):
        grouper.group_batch()
    assert grouping_of(engine) == before
    assert _count(engine, "SELECT count(*) FROM grouper_batches") == batches
    assert _count(engine, "SELECT count(*) FROM articles WHERE event_id IS NULL") == (
        len(entries) - GROUPER_BATCH
    )
    engine.dispose()


def test_group_role_is_refused_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'n.db'}")
    with pytest.raises(NotScalable, match="Postgres only"):
        Grouper(engine, FileConfig(), Settings(), GrouperOptions())
    engine.dispose()
    result = CliRunner().invoke(
        main, ["run", "--role", "group"], env={"DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"}
    )
    assert result.exit_code == 2, result.output
    assert "Postgres only" in result.output
    assert not (tmp_path / "c.db").exists()  # refused before the store is opened


def _leading_grouper(engine: Engine) -> Grouper:
    """A grouper in this process that leads (as if its lock thread got the lock)."""
    from newswatch.store.grouper_lease import take_lease

    grouper = Grouper(engine, FileConfig(), Settings(), GrouperOptions(batch=GROUPER_BATCH))
    grouper.state = grouper._build()
    grouper.locked.set()
    grouper._lock_conn = None
    with session_scope(engine) as session:
        grouper.epoch = take_lease(session, "test:1")
    return grouper


def test_sightings_of_grouped_articles_count_into_their_events(
    pg_urls: tuple[str, str],
) -> None:
    """One source's article is grouped; four more sources carry it later. Their sightings
    (queued by the fetch workers' sink) give its event five sources, as the single process
    counts them."""
    url, _ = pg_urls
    engine = _migrated(url)
    entry = _entries()[0][1]
    sink = StoringSink(engine, FileConfig(), Settings())
    names = [f"outlet{i}" for i in range(5)]
    with session_scope(engine) as session:
        sources = ensure_sources(session, names, origin="config")
        sink.ingest_jobs(session, [(sources[names[0]], [entry])])
    grouper = _leading_grouper(engine)
    assert grouper.group_batch() == 1
    with session_scope(engine) as session:
        sources = ensure_sources(session, names, origin="config")
        sink.ingest_jobs(session, [(sources[name], [entry]) for name in names[1:]])
    assert _count(engine, "SELECT count(*) FROM late_sightings") == 4
    assert grouper.group_batch() == 4
    assert _count(engine, "SELECT count(*) FROM late_sightings") == 0
    assert (
        _count(
            engine,
            "SELECT e.source_count FROM events e JOIN articles a ON a.event_id = e.id",
        )
        == 5
    )
    assert grouper.group_batch() == 0  # nothing waits: sightings are counted once
    engine.dispose()


def test_an_article_committed_before_an_earlier_id_waits_for_it(
    pg_urls: tuple[str, str],
) -> None:
    """Two fetch workers: the first takes an article id and is still storing when the
    second takes the next id and commits. The grouper takes nothing past the first's id
    until the first has ended, then both in id order (docs/decisions/0211): the events do
    not depend on which worker committed first."""
    url, _ = pg_urls
    engine = _migrated(url)
    first, second = _entries()[:2]
    with session_scope(engine) as session:
        ensure_sources(session, [first[0], second[0]], origin="config")
    grouper = _leading_grouper(engine)
    slow = Session(engine)
    try:
        sources = ensure_sources(slow, [first[0]], origin="config")
        join_article_writers(slow)
        (earlier,) = store_batch(slow, [(sources[first[0]], first[1])], concurrent=True)
        store_as_fetch_worker(engine, [second])  # joins the writers too (StoringSink does)
        assert _count(engine, "SELECT max(id) FROM articles") > earlier.id
        assert grouper.group_batch() == 0  # the later id is visible, the earlier one is not
        assert grouper.horizon is not None
        slow.commit()
    finally:
        slow.close()
    wait_for(lambda: grouper.group_batch() > 0, 30, "the horizon settled")
    with engine.connect() as conn:
        logged = [
            i
            for (ids,) in conn.execute(text("SELECT article_ids FROM grouper_batches"))
            for i in ids
        ]
    assert logged == sorted(logged) and logged[0] == earlier.id and len(logged) == 2
    engine.dispose()


def _grouper(engine: Engine, checkpoint_articles: int) -> Grouper:
    options = GrouperOptions(batch=GROUPER_BATCH, checkpoint_articles=checkpoint_articles)
    grouper = Grouper(engine, FileConfig(), Settings(), options)
    grouper.state = grouper._build()
    return grouper


def _lead(grouper: Grouper) -> None:
    """Become the leader as the lock thread's process does: the lease, the origin logged."""
    grouper.locked.set()
    with session_scope(grouper.engine) as session:
        grouper.epoch = grouper._take_lease(session)


def _drain(grouper: Grouper) -> int:
    """What the leader's loop does until nothing waits: batches, a checkpoint when due."""
    checkpoints = 0
    while grouper.group_batch() or grouper.horizon is not None:
        if grouper._checkpoint_due():
            grouper.checkpoint()
            checkpoints += 1
    return checkpoints


def _placements(grouper: Grouper, articles: list[Any]) -> list[tuple[Any, ...]]:
    assert grouper.state is not None
    return [
        (d.event_id, d.stage, round(float(d.score), 4), d.duplicate_of)
        for _a, d, _w in grouper.state.grouper.decide(articles)
    ]


def test_checkpoints_prune_the_log_and_standbys_build_the_leaders_state_from_them(
    pg_urls: tuple[str, str],
) -> None:
    """The leader starts a new origin every 100 logged articles and prunes the log before
    it. A standby that was following moves to the new origin; a standby started afresh
    restores the checkpoint and replays only the tail. Both then hold the leader's state:
    the next articles get the same decisions from all three (docs/decisions/0212)."""
    url, _ = pg_urls
    engine = _migrated(url)
    entries = _entries()[:660]
    chunks = list(_chunks(entries))
    for chunk in chunks[:4]:
        store_as_fetch_worker(engine, chunk)
    leader = _grouper(engine, checkpoint_articles=100)
    _lead(leader)
    following = _grouper(engine, checkpoint_articles=100)
    first_origin = _lease_origin(engine)
    assert _drain(leader) >= 2
    for chunk in chunks[4:-1]:
        store_as_fetch_worker(engine, chunk)
    _drain(leader)
    origin = _lease_origin(engine)
    assert origin > first_origin
    # The log starts at the lease's origin: everything before it is gone.
    assert _count(engine, "SELECT min(seq) FROM grouper_batches") == origin
    logged_after = _count(engine, "SELECT count(*) FROM grouper_batches WHERE origin IS NULL")
    assert 0 < logged_after <= 100 // GROUPER_BATCH + 1
    following._follow()
    fresh = _grouper(engine, checkpoint_articles=100)
    for standby in (following, fresh):
        assert standby.state is not None and leader.state is not None
        assert standby.state.origin_seq == origin
        assert standby.state.seq == leader.state.seq
        assert standby.state.mismatches == 0
        assert standby.state.replayed <= 100 + GROUPER_BATCH
    store_as_fetch_worker(engine, chunks[-1])
    with session_scope(engine) as session:
        upcoming = ungrouped_articles(session, 100)
    assert upcoming  # (a chunk's repeated texts are one article: fewer than its entries)
    expected = _placements(leader, upcoming)
    assert _placements(following, upcoming) == expected
    assert _placements(fresh, upcoming) == expected
    engine.dispose()


def test_a_standby_built_before_any_lease_replays_the_leaders_batches_when_it_takes_over(
    pg_urls: tuple[str, str],
) -> None:
    """A standby whose state was built when no lease existed logs a new origin when it
    takes over; the old leader's batches after that state must survive the pruning that
    comes with the new origin, or the standby never replays them (review of 0212)."""
    url, _ = pg_urls
    engine = _migrated(url)
    chunks = list(_chunks(_entries()[:500]))
    store_as_fetch_worker(engine, chunks[0])
    standby = _grouper(engine, checkpoint_articles=1_000_000)
    assert standby.state is not None and standby.state.origin_seq is None
    leader = _grouper(engine, checkpoint_articles=1_000_000)
    _lead(leader)
    for chunk in chunks[1:-1]:
        store_as_fetch_worker(engine, chunk)
    _drain(leader)
    assert _count(engine, "SELECT count(*) FROM grouper_batches WHERE origin IS NULL") > 0
    # The leader dies; the standby takes the lease without having followed the log.
    standby.locked.set()
    standby._lock_conn = engine.connect()  # stands for the lock's session; never checked here
    standby.stop.set()  # take over, replay, and return instead of grouping on
    standby._lead()
    standby._lock_conn.close()
    assert standby.state is not None and leader.state is not None
    assert standby.state.seq == leader.state.seq
    assert standby.state.mismatches == 0
    store_as_fetch_worker(engine, chunks[-1])
    with session_scope(engine) as session:
        upcoming = ungrouped_articles(session, 100)
    assert upcoming
    assert _placements(standby, upcoming) == _placements(leader, upcoming)
    engine.dispose()


def test_a_checkpoint_between_a_standbys_reads_changes_nothing_it_reads(
    pg_urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A standby reads the lease, then the origin it names and the log after it. When the
    leader checkpoints in between (a new origin, the log before it pruned) and logs a batch
    after it, the standby must still read what the lease it read names: one snapshot
    (decision 0095). Before, a standby being built lost the origin (and restored the whole
    window afresh) and a following one replayed the batch after the new origin over a gap
    of pruned batches it had never replayed."""
    import newswatch.scaled.grouper as grouper_module

    url, _ = pg_urls
    engine = _migrated(url)
    chunks = list(_chunks(_entries()[:420]))
    store_as_fetch_worker(engine, chunks[0])
    leader = _grouper(engine, checkpoint_articles=1_000_000)
    _lead(leader)
    _drain(leader)
    origin = _lease_origin(engine)
    following = _grouper(engine, checkpoint_articles=1_000_000)
    for chunk in chunks[1:3]:
        store_as_fetch_worker(engine, chunk)
    _drain(leader)
    assert leader.state is not None and following.state is not None
    logged_seq, followed_seq = leader.state.seq, following.state.seq
    assert logged_seq > followed_seq
    later = iter(chunks[3:])

    def checkpoint_then(real: Any) -> Any:
        def hooked(session: Any, *args: Any) -> Any:
            if real not in hooked_once:
                hooked_once.add(real)
                leader.checkpoint()
                store_as_fetch_worker(engine, next(later))
                assert leader.group_batch() > 0  # a batch logged after the new origin
            return real(session, *args)

        return hooked

    hooked_once: set[Any] = set()
    # Following: the lease names the origin it holds; the log is read after the checkpoint.
    monkeypatch.setattr(
        grouper_module, "iter_batches_after", checkpoint_then(grouper_module.iter_batches_after)
    )
    following._follow()
    assert following.state is not None
    assert (following.state.origin_seq, following.state.seq) == (origin, logged_seq)
    assert following.state.mismatches == 0
    # Being built: the origin the lease names is read after the next checkpoint.
    origin, logged_seq = _lease_origin(engine), leader.state.seq
    monkeypatch.setattr(grouper_module, "read_origin", checkpoint_then(grouper_module.read_origin))
    built = _grouper(engine, checkpoint_articles=1_000_000)
    assert built.state is not None
    assert (built.state.origin_seq, built.state.seq) == (origin, logged_seq)
    assert built.state.mismatches == 0 and built.state.restored > 0
    assert _lease_origin(engine) > origin  # the checkpoint did happen in between
    engine.dispose()


def _lease_origin(engine: Engine) -> int:
    with session_scope(engine) as session:
        lease = read_lease(session)
    assert lease is not None
    return lease.origin_seq


def test_the_real_grouping_lock_picks_one_leader_and_passes_to_the_standby(
    pg_urls: tuple[str, str],
) -> None:
    """Two groupers in threads on the real Postgres advisory lock (the other tests here
    hand the lock to one by hand): one leads, the other waits on the lock; when the
    leader's lock session ends (as when its process dies) the standby gets the lock, bumps
    the epoch and groups what comes next, and the old leader steps down to wait."""
    url, _ = pg_urls
    engine = _migrated(url)
    chunks = list(_chunks(_entries()[: 2 * CHUNK]))
    store_as_fetch_worker(engine, chunks[0])

    def grouper(holder: str) -> Grouper:
        options = GrouperOptions(batch=GROUPER_BATCH, poll_seconds=0.2, holder=holder)
        return Grouper(engine, FileConfig(), Settings(), options)

    def holder() -> str | None:
        with session_scope(engine) as session:
            lease = read_lease(session)
        return None if lease is None else lease.holder

    first, second = grouper("first:1"), grouper("second:2")
    threads = [threading.Thread(target=g.run, daemon=True) for g in (first, second)]
    try:
        threads[0].start()
        wait_for(
            lambda: holder() == "first:1" and _count(engine, GROUPED) == CHUNK, 120, "first leads"
        )
        threads[1].start()
        wait_for(lambda: second.state is not None, 120, "the second's state built")
        assert not second.locked.is_set()  # it waits on the lock the first holds
        assert first._lock_conn is not None
        # The leader's lock session ends, as when its process dies (ended by the server:
        # closing the connection from this thread could race the grouper's own use of it).
        with engine.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(:pid)"),
                {"pid": first._lock_conn.info.backend_pid},
            )
        wait_for(lambda: holder() == "second:2", 120, "the standby leads")
        store_as_fetch_worker(engine, chunks[1])
        wait_for(lambda: _count(engine, GROUPED) == 2 * CHUNK, 120, "the next articles grouped")
        wait_for(lambda: not first.locked.is_set(), 120, "the old leader stepped down")
        with session_scope(engine) as session:
            lease = read_lease(session)
        assert lease is not None and lease.epoch == 2
    finally:
        for g in (first, second):
            g.stop.set()
        for thread in threads:
            thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    engine.dispose()


GROUPED = "SELECT count(*) FROM articles WHERE event_id IS NOT NULL"
