"""The scaled mode end to end (issue 16): a scheduler, a fetch worker, two groupers and a
delivery worker as real `newswatch run --role …` processes on a real Postgres, against feeds
and a webhook receiver on 127.0.0.1.

The roles are tested one by one in test_scaled_roles.py and test_scaled_grouper.py; this
test checks that they fit together: what fetch workers store, the grouper groups (the
standby taking over when the leader is killed), and the notifications the grouper queues,
the delivery worker sends, each once per idempotency key.
"""

from __future__ import annotations

import signal
from pathlib import Path

from newswatch.store.db import make_engine, upgrade
from tests.localserver import LocalServer
from tests.reliability.processes import wait_for
from tests.reliability.scaled_support import (
    SETTLE_SECONDS,
    expected_articles,
    farm,
    postgres_only,
    problems,
    role,
    running,
    scalar,
    wire_rule_to_webhook,
    write_config,
)

FEEDS = 30


@postgres_only
def test_fetch_workers_a_failing_over_grouper_and_delivery_fit_together(
    cli_env: dict[str, str], tmp_path: Path, server: LocalServer
) -> None:
    receiver, channels = wire_rule_to_webhook(server)
    env = cli_env | {"NEWSWATCH_FETCH_BATCH_SOURCES": "10", "NEWSWATCH_GROUPER_POLL_SECONDS": "1"}
    engine = make_engine(env["DATABASE_URL"])
    upgrade(engine)
    with farm(FEEDS, hosts=2) as the_farm:
        env["NEWSWATCH_CONFIG"] = str(write_config(tmp_path, the_farm, channels))
        scheduler = role(env, tmp_path, "scheduler", "scheduler")
        fetcher = role(env, tmp_path, "fetch", "fetch")
        first = role(env, tmp_path, "group1", "group")
        deliverer = role(env, tmp_path, "deliver", "deliver")
        with scheduler, fetcher, first, deliverer:
            wait_for(
                lambda: (
                    running(scheduler, fetcher, first, deliverer)
                    and scalar(
                        engine, "SELECT count(*) FROM articles WHERE group_stage IS NOT NULL"
                    )
                    >= expected_articles(the_farm)
                ),
                SETTLE_SECONDS,
                "the first round grouped",
            )
            # The leader dies; a standby started now takes over and groups the next round.
            first.signal(signal.SIGKILL)
            first.wait(30)
            second = role(env, tmp_path, "group2", "group")
            with second:
                # Half the feeds change first, and their round's wire story is grouped
                # before the other half carry it too: those are sightings of an article
                # grouped already, which its event must count.
                the_farm.bump(list(range(0, FEEDS, 2)))
                wait_for(the_farm.downloaded_current, SETTLE_SECONDS, "the first half changed")
                wait_for(
                    lambda: (
                        scalar(
                            engine,
                            "SELECT count(*) FROM articles WHERE canonical_url ="
                            " 'https://wire.example/1' AND event_id IS NOT NULL",
                        )
                        == 1
                    ),
                    SETTLE_SECONDS,
                    "the second round's wire story grouped",
                )
                the_farm.bump(list(range(1, FEEDS, 2)))
                wait_for(the_farm.downloaded_current, SETTLE_SECONDS, "the second half changed")
                expected = expected_articles(the_farm)
                wait_for(
                    lambda: (
                        running(scheduler, fetcher, second, deliverer)
                        and scalar(
                            engine, "SELECT count(*) FROM articles WHERE group_stage IS NULL"
                        )
                        == 0
                        and scalar(engine, "SELECT count(*) FROM articles") >= expected
                    ),
                    SETTLE_SECONDS,
                    "every article grouped",
                )
                wait_for(
                    lambda: (
                        scalar(engine, "SELECT count(*) FROM notifications WHERE status <> 'sent'")
                        == 0
                        and len(receiver.keys) >= 1
                    ),
                    SETTLE_SECONDS,
                    "the notifications sent",
                )
                second.signal(signal.SIGTERM)
                assert second.wait(90) == 0, second.log_text()[-3000:]
            for nw in (scheduler, fetcher, deliverer):
                nw.signal(signal.SIGTERM)
            codes = [nw.wait(90) for nw in (scheduler, fetcher, deliverer)]
        assert codes == [0, 0, 0]
        assert problems(scheduler, fetcher, second, deliverer) == []
    try:
        assert scalar(engine, "SELECT count(*) FROM articles") == expected
        # Every article grouped, by the leader or by the standby after the kill.
        assert scalar(engine, "SELECT count(*) FROM articles WHERE event_id IS NULL") == 0
        # Every feed carried each round's wire story: fetch workers stored it once and each
        # other feed's copy as a late sighting, which the grouper counted into its event.
        assert (
            scalar(
                engine,
                "SELECT min(e.source_count) FROM events e JOIN articles a ON a.event_id = e.id"
                " WHERE a.canonical_url LIKE 'https://wire.example/%' AND e.merged_into IS NULL",
            )
            == FEEDS
        )
        assert scalar(engine, "SELECT count(*) FROM late_sightings") == 0
        # Each notification the groupers queued was sent, once per idempotency key.
        assert set(receiver.keys.values()) == {1}
        assert len(receiver.keys) == scalar(engine, "SELECT count(*) FROM notifications")
        assert {key.split(":")[0] for key in receiver.keys} == {"wire"}
    finally:
        engine.dispose()
