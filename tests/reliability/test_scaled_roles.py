"""The scaled mode's scheduler, fetch and deliver roles (issue 16) as real `newswatch run
--role …` processes on a real Postgres, against feeds served on 127.0.0.1.

- A scheduler and two fetch workers over a few hundred feeds whose content changes: each
  change downloaded once, every article stored once (not grouped: the grouper's part), no
  unique violation or deadlock, and a NOTIFY for the grouper after stored batches.
- A fetch worker killed (SIGKILL) in the middle of a batch: the batch runs again on another
  worker; nothing is lost, nothing stored twice, only the polls under way are repeated.
- Two delivery workers: every notification delivered once per idempotency key.
Conditions are polled for (tests/reliability/processes.py wait_for), never slept on.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import psycopg
from sqlalchemy import Engine, text

from newswatch.store.db import make_engine, session_scope, upgrade
from newswatch.store.outbox import enqueue
from tests.localserver import LocalServer
from tests.reliability.processes import wait_for
from tests.reliability.scaled_support import (
    HOSTS,
    ITEMS,
    RETRY_SECONDS,
    SETTLE_SECONDS,
    Receiver,
    expected_articles,
    farm,
    postgres_only,
    problems,
    role,
    running,
    scalar,
    write_config,
)

FEEDS = 240


class Listener:
    """LISTEN newswatch_articles on a connection of its own, counting this store's notices."""

    def __init__(self, url: str, schema: str):
        conninfo = url.replace("postgresql+psycopg://", "postgresql://")
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.conn.execute("LISTEN newswatch_articles")
        self.schema = schema
        self.count = 0

    def poll(self) -> int:
        for notice in self.conn.notifies(timeout=0.1, stop_after=1000):
            if notice.payload == self.schema:
                self.count += 1
        return self.count

    def close(self) -> None:
        self.conn.close()


def store_schema(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT current_schema()")).scalar_one())


@postgres_only
def test_a_scheduler_and_two_fetch_workers_download_each_change_once(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = cli_env | {"NEWSWATCH_FETCH_BATCH_SOURCES": "20", "NEWSWATCH_FETCH_LANES": "8"}
    engine = make_engine(env["DATABASE_URL"])
    upgrade(engine)
    listener = Listener(env["DATABASE_URL"], store_schema(engine))
    with farm(FEEDS) as the_farm:
        env["NEWSWATCH_CONFIG"] = str(write_config(tmp_path, the_farm))
        scheduler = role(env, tmp_path, "scheduler", "scheduler")
        workers = [role(env, tmp_path, f"fetch{i}", "fetch") for i in range(2)]
        with scheduler, workers[0], workers[1]:
            wait_for(
                lambda: running(scheduler, *workers) and the_farm.downloaded_current(),
                SETTLE_SECONDS,
                "every feed's first download",
            )
            for changed in (list(range(0, FEEDS, 2)), list(range(0, FEEDS, 3))):
                the_farm.bump(changed)
                wait_for(the_farm.downloaded_current, SETTLE_SECONDS, "the changed feeds")
            # Every feed answered 304 at least once since: its state is stored.
            wait_for(
                lambda: all(the_farm.not_modified[n] for n in range(FEEDS)),
                SETTLE_SECONDS,
                "a conditional GET answered 304 for every feed",
            )
            expected = expected_articles(the_farm)
            wait_for(
                lambda: scalar(engine, "SELECT count(*) FROM articles") >= expected,
                SETTLE_SECONDS,
                "the articles stored",
            )
            wait_for(lambda: listener.poll() > 0, 30, "a NOTIFY newswatch_articles")
            for nw in (scheduler, *workers):
                nw.signal(signal.SIGTERM)
            codes = [nw.wait(90) for nw in (scheduler, *workers)]
        assert codes == [0, 0, 0], [nw.log_text()[-3000:] for nw in (scheduler, *workers)]
        assert problems(scheduler, *workers) == []
        # Each version of each feed downloaded once: no source polled by two workers at once,
        # and validators stored with the entries.
        repeated = {key: n for key, n in the_farm.downloads.items() if n > 1}
        assert repeated == {}
        # Both workers polled (the batches were shared out).
        assert all(nw.logged("batch polled") for nw in workers)
        # Politeness across workers: a host's sources are in one lane, whose jobs run one at
        # a time, so a host never had more requests at once than one worker's gate allows
        # (NEWSWATCH_HTTP_PER_HOST_CONCURRENCY, 2), however many workers ran.
        assert len(the_farm.most_in_flight) == HOSTS
        assert max(the_farm.most_in_flight.values()) <= 2
    listener.close()
    try:
        assert scalar(engine, "SELECT count(*) FROM articles") == expected
        assert scalar(
            engine, "SELECT count(*) FROM articles WHERE canonical_url LIKE '%wire%'"
        ) == len(set(the_farm.generation.values()) | {0})
        # The wire story of a round: stored once, a sighting at every feed that carried it.
        assert (
            scalar(
                engine,
                "SELECT count(*) FROM sightings s JOIN articles a ON a.id = s.article_id "
                "WHERE a.canonical_url = 'https://wire.example/0'",
            )
            == FEEDS
        )
        # Not grouped: that is the grouper's (group_stage and event_id empty).
        assert (
            scalar(
                engine,
                "SELECT count(*) FROM articles"
                " WHERE event_id IS NOT NULL OR group_stage IS NOT NULL",
            )
            == 0
        )
        # Every batch ran to its end: finished jobs are deleted, none failed or waits.
        assert (
            scalar(
                engine,
                "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = "
                "'newswatch-fetch' AND status <> 'todo'",
            )
            == 0
        )
    finally:
        engine.dispose()


@postgres_only
def test_a_fetch_worker_killed_mid_batch_its_batch_runs_again_and_nothing_is_lost(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    feeds = 60
    env = cli_env | {"NEWSWATCH_FETCH_BATCH_SOURCES": "30", "NEWSWATCH_FETCH_LANES": "1"}
    engine = make_engine(env["DATABASE_URL"])
    upgrade(engine)
    with farm(feeds, hosts=1) as the_farm:
        env["NEWSWATCH_CONFIG"] = str(write_config(tmp_path, the_farm))
        the_farm.hold = {7}  # feed 7's answer waits: its batch is under way when killed
        scheduler = role(env, tmp_path, "scheduler", "scheduler")
        doomed = role(env, tmp_path, "doomed", "fetch")
        survivor = role(env, tmp_path, "survivor", "fetch")
        with scheduler, doomed:
            wait_for(
                lambda: running(scheduler, doomed) and 7 in the_farm.held,
                SETTLE_SECONDS,
                "feed 7's request under way",
            )
            doomed.signal(signal.SIGKILL)
            doomed.wait(30)
            stored_before = polled_feeds(engine)
            the_farm.release.set()
            with survivor:
                wait_for(the_farm.downloaded_current, RETRY_SECONDS, "every feed downloaded")
                wait_for(
                    lambda: (
                        scalar(engine, "SELECT count(*) FROM articles")
                        >= expected_articles(the_farm)
                    ),
                    SETTLE_SECONDS,
                    "every article stored",
                )
                scheduler.signal(signal.SIGTERM)
                survivor.signal(signal.SIGTERM)
                assert survivor.wait(90) == 0, survivor.log_text()[-3000:]
            assert scheduler.wait(90) == 0
        assert problems(scheduler, survivor) == []
        # Only polls of the killed batch (the first 30 feeds) that had not stored their
        # entries ran twice, once each; the batch's run again skipped those that had.
        repeated = {key: n for key, n in the_farm.downloads.items() if n > 1}
        assert (7, 0) in repeated
        assert set(repeated) <= {(n, 0) for n in range(30) if n not in stored_before}
        assert set(repeated.values()) == {2}
        assert scheduler.logged("retrying a batch whose worker stopped")
    try:
        # Nothing lost: every entry stored; nothing twice: one article per URL, one sighting
        # per article and feed.
        assert scalar(engine, "SELECT count(*) FROM articles") == expected_articles(the_farm)
        assert scalar(engine, "SELECT count(*) FROM sightings") == feeds * (ITEMS + 1)
        with engine.connect() as conn:
            polled = conn.execute(
                text("SELECT count(*) FROM sources WHERE last_success_at IS NULL")
            ).scalar_one()
        assert polled == 0
    finally:
        engine.dispose()


def polled_feeds(engine: Engine) -> set[int]:
    """Feeds whose poll stored its result (feed n is the source named feed<n>)."""
    with engine.connect() as conn:
        names = conn.execute(
            text("SELECT name FROM sources WHERE last_success_at IS NOT NULL")
        ).scalars()
        return {int(name.removeprefix("feed")) for name in names}


@postgres_only
def test_two_delivery_workers_deliver_each_notification_once(
    cli_env: dict[str, str], tmp_path: Path, server: LocalServer
) -> None:
    count = 300
    receiver = Receiver()
    server.routes["/hook"] = receiver.handle
    config = tmp_path / "newswatch.yaml"
    config.write_text(
        f"channels:\n  - name: ops\n    type: webhook\n    url: {server.url('/hook')}\n"
        "    timeout: 10\n"
    )
    env = cli_env | {"NEWSWATCH_CONFIG": str(config)}
    engine = make_engine(env["DATABASE_URL"])
    upgrade(engine)
    workers = [role(env, tmp_path, f"deliver{i}", "deliver") for i in range(2)]
    with workers[0], workers[1]:
        with session_scope(engine) as session:
            for event_id in range(1, count + 1):
                payload = {"rule": "r", "event_id": event_id, "title": "t", "articles": []}
                enqueue(
                    session, rule="r", channel="ops", event_id=event_id, revision=1, payload=payload
                )
        wait_for(
            lambda: (
                running(*workers)
                and scalar(engine, "SELECT count(*) FROM notifications WHERE status = 'sent'")
                == count
            ),
            SETTLE_SECONDS,
            "every notification sent",
        )
        for nw in workers:
            nw.signal(signal.SIGTERM)
        codes = [nw.wait(60) for nw in workers]
    engine.dispose()
    assert codes == [0, 0]
    assert problems(*workers) == []
    assert receiver.keys == Counter({f"r:{i}:1": 1 for i in range(1, count + 1)})
