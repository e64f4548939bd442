"""The scaled mode's store side (store/claims.py, store/job_queue.py, the fetch workers'
concurrent article writes): on a real Postgres, with real concurrent transactions; the
article writes on SQLite too."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from newswatch.api import create_app
from newswatch.config import Settings
from newswatch.scaled.queue import POLL_BATCH, build_app, ensure_queue_tables
from newswatch.scaled.roles import register_tasks
from newswatch.scaled.scheduler import form_batches, lane_of
from newswatch.shared_types import ParsedEntry
from newswatch.store.articles import store_batch
from newswatch.store.claims import (
    ClaimedSource,
    claim_due_sources,
    leased_snapshots,
    release_claims,
)
from newswatch.store.db import session_scope
from newswatch.store.job_queue import FETCH_QUEUE, queue_depth, queue_tables_exist
from newswatch.store.models import Source
from tests.api_support import running

postgres_only = pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def add_sources(engine: Engine, count: int, due: datetime | None = NOW) -> list[int]:
    with session_scope(engine) as session:
        sources = [
            Source(
                name=f"s{n}",
                url=f"http://host{n % 3}.example/feed/{n}",
                configured_url=f"http://host{n % 3}.example/feed/{n}",
                next_fetch_at=due,
            )
            for n in range(count)
        ]
        session.add_all(sources)
        session.flush()
        return [s.id for s in sources if s.id is not None]


@postgres_only
def test_two_claims_at_once_share_the_due_sources_without_overlap(engine: Engine) -> None:
    ids = add_sources(engine, 40)
    with session_scope(engine) as session:  # a source not due yet is never claimed
        session.add(
            Source(
                name="later",
                url="http://x/",
                configured_url="http://x/",
                next_fetch_at=NOW + timedelta(hours=1),
            )
        )
    lease = NOW + timedelta(minutes=10)
    first = Session(engine)
    second = Session(engine)
    try:
        # The first claim's transaction is open (its rows locked) while the second claims.
        a = claim_due_sources(first, NOW, lease, 25)
        b = claim_due_sources(second, NOW, lease + timedelta(seconds=1), 25)
        first.commit()
        second.commit()
    finally:
        first.close()
        second.close()
    assert len(a) == 25 and len(b) == 15
    assert {c.id for c in a}.isdisjoint({c.id for c in b})
    assert {c.id for c in a} | {c.id for c in b} == set(ids)
    with session_scope(engine) as session:
        assert claim_due_sources(session, NOW, lease, 100) == []  # leased: not due


@postgres_only
def test_a_batch_polls_only_what_is_still_leased_to_it(engine: Engine) -> None:
    ids = add_sources(engine, 5, due=None)  # never polled: due at once
    lease = NOW + timedelta(minutes=10)
    with session_scope(engine) as session:
        assert len(claim_due_sources(session, NOW, lease, 10)) == 5
    with session_scope(engine) as session:
        polled = session.get(Source, ids[0])
        assert polled is not None
        polled.next_fetch_at = NOW + timedelta(minutes=1)  # as a finished poll sets it
    with session_scope(engine) as session:
        assert [s.id for s in leased_snapshots(session, ids, lease)] == ids[1:]
        assert release_claims(session, ids, lease, NOW) == 4
    with session_scope(engine) as session:
        assert leased_snapshots(session, ids, lease) == []
        assert len(claim_due_sources(session, NOW, lease, 10)) == 4


def test_batches_keep_each_host_in_one_lane_and_respect_the_size() -> None:
    claimed = [ClaimedSource(n, f"http://host{n % 5}.example:8{n % 5}/f/{n}") for n in range(60)]
    lease = NOW
    batches = form_batches(claimed, lease, lanes=4, size=7)
    assert sorted(i for b in batches for i in b.source_ids) == list(range(60))
    assert all(len(b.source_ids) <= 7 for b in batches)
    for batch in batches:
        for source_id in batch.source_ids:
            assert lane_of(claimed[source_id].url, 4) == batch.lane
    # Same host, same lane; the lane does not depend on the path.
    assert lane_of("http://a.example/x", 64) == lane_of("http://A.example/y?z", 64)


def entry(url: str, title: str) -> ParsedEntry:
    return ParsedEntry(url=url, guid=url, title=title, summary=f"{title}, told at length here.")


def test_a_concurrent_write_stores_as_the_pipeline_does(engine: Engine) -> None:
    """One writer (SQLite and Postgres): new articles are new, an article stored before is a
    sighting, rows come back in the entries' order. (Two writers at once: the next test.)"""
    ids = add_sources(engine, 2)
    with session_scope(engine) as session:
        one, two = session.get(Source, ids[0]), session.get(Source, ids[1])
        assert one is not None and two is not None
        first = store_batch(session, [(one, entry("https://n.example/a", "A"))], concurrent=True)
        second = store_batch(
            session,
            [(two, entry("https://n.example/a", "A")), (two, entry("https://n.example/b", "B"))],
            concurrent=True,
        )
    assert first[0].is_new and not second[0].is_new and second[1].is_new
    assert second[0].id == first[0].id
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM articles")).scalar_one() == 2
        assert conn.execute(text("SELECT count(*) FROM sightings")).scalar_one() == 3


@postgres_only
def test_two_writers_storing_the_same_urls_at_once_neither_fails(engine: Engine) -> None:
    """Two transactions insert overlapping URLs (in opposite feed orders) at the same time:
    the second waits for the first, then takes its articles as sightings. No unique violation,
    no deadlock; one article per URL."""
    ids = add_sources(engine, 2)
    urls = [f"https://n.example/{n}" for n in range(30)]
    first = Session(engine)
    source_one = first.get(Source, ids[0])
    assert source_one is not None
    stored_first = store_batch(
        first, [(source_one, entry(u, f"T {u}")) for u in urls], concurrent=True
    )
    result: dict[str, object] = {}

    def second_writer() -> None:
        try:
            with session_scope(engine) as session:
                source_two = session.get(Source, ids[1])
                assert source_two is not None
                items = [(source_two, entry(u, f"T {u}")) for u in reversed(urls)]
                # Entries without a URL among them: inserted, their ids theirs in order.
                items[5:5] = [
                    (source_two, ParsedEntry(title=f"No link {n}", summary=f"Text number {n}."))
                    for n in range(3)
                ]
                result["stored"] = store_batch(session, items, concurrent=True)
        except Exception as exc:  # reported to the test below
            result["error"] = exc

    thread = threading.Thread(target=second_writer)
    thread.start()
    thread.join(1.0)
    assert thread.is_alive()  # waiting for the first writer's uncommitted rows
    first.commit()
    first.close()
    thread.join(30)
    assert "error" not in result, result.get("error")
    stored_second = result["stored"]
    assert isinstance(stored_second, list)
    unlinked = stored_second[5:8]
    linked = stored_second[:5] + stored_second[8:]
    assert not any(a.is_new for a in linked) and all(a.is_new for a in unlinked)
    assert sorted(a.id for a in linked) == sorted(a.id for a in stored_first)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM articles")).scalar_one() == 33
        assert conn.execute(text("SELECT count(*) FROM sightings")).scalar_one() == 63
        titles = dict(conn.execute(text("SELECT id, title FROM articles")).all())
        indexed = conn.execute(text("SELECT count(*) FROM article_search")).scalar_one()
    assert [titles[a.id] for a in unlinked] == [f"No link {n}" for n in range(3)]
    assert indexed == 33  # each article indexed once


@postgres_only
def test_queue_tables_are_created_once_in_the_stores_schema(engine: Engine) -> None:
    assert not queue_tables_exist(engine)
    with session_scope(engine) as session:
        assert queue_depth(session) is None
    ensure_queue_tables(engine)
    ensure_queue_tables(engine)  # a second process at start: nothing to do
    assert queue_tables_exist(engine)
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        where = (
            conn.execute(
                text("SELECT table_schema FROM information_schema.tables WHERE table_name = :t"),
                {"t": "procrastinate_jobs"},
            )
            .scalars()
            .all()
        )
    assert schema in where
    with session_scope(engine) as session:
        assert queue_depth(session) == {}


@postgres_only
def test_metrics_show_the_queue_depth_and_the_sources_due(engine: Engine) -> None:
    add_sources(engine, 3, due=None)
    ensure_queue_tables(engine)
    app = build_app(engine)
    register_tasks(app, scheduler=False)
    with app.open():
        app.configure_task(POLL_BATCH, queue=FETCH_QUEUE, lock="lane:0").defer(
            source_ids=[1], lease=NOW.isoformat()
        )
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with running(create_app(engine, settings)) as srv:
        metrics = srv.get("/metrics").text
    assert 'newswatch_queue_jobs{queue="newswatch-fetch",status="todo"} 1.0' in metrics
    assert 'newswatch_queue_jobs{queue="newswatch-fetch",status="doing"} 0.0' in metrics
    assert "newswatch_sources_due 3.0" in metrics
