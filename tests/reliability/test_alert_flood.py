"""A flood of events must not flood the outbox (issue 20, item 3): at most
NEWSWATCH_ALERT_MAX_PER_RULE notifications per rule and window, the events beyond told in one
summary per channel, sent when the window ends. Before: 119,932 notifications queued for one
60,000-entry feed. SQLite and Postgres; the summary delivered to a real local webhook."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from aiohttp import web
from sqlalchemy import func, select

from newswatch.alerts.config import ChannelConfig, RuleConfig
from newswatch.alerts.delivery import DeliveryWorker
from newswatch.config import FileConfig, Settings
from newswatch.pipeline import Pipeline
from newswatch.shared_types import ParsedEntry
from newswatch.store.alert_models import AlertState, Notification
from newswatch.store.articles import ensure_source
from newswatch.store.db import session_scope

LIMIT = 5
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # a window is [09:00, 10:00)
RULE = RuleConfig(name="floods", query="flood", channels=["hook", "other"])


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _unrelated_reports(count: int, seed: int) -> list[ParsedEntry]:
    """`count` reports about the flood in as many unrelated places: one event each."""
    rng = random.Random(seed)
    letters = "bcdfghjklmnpqrstvwxz"
    out = []
    for i in range(count):
        words = ["".join(rng.choice(letters) + "a" for _ in range(4)) for _ in range(12)]
        out.append(
            ParsedEntry(
                url=f"https://example.org/{seed}/{i}",
                title=f"Flood in {words[0].title()} {words[1]} {words[2]}",
                text=" ".join(words) + " flood",
            )
        )
    return out


def _setup(engine, server) -> tuple[Pipeline, Clock, int, FileConfig, Settings]:  # type: ignore[no-untyped-def]
    config = FileConfig(
        channels=[
            ChannelConfig(name="hook", type="webhook", url=server.url("/hook")),
            ChannelConfig(name="other", type="webhook", url=server.url("/other")),
        ],
        rules=[RULE],
    )
    settings = Settings(_env_file=None, NEWSWATCH_ALERT_MAX_PER_RULE=LIMIT)  # type: ignore[call-arg]
    pipeline = Pipeline(engine, config, settings)
    assert pipeline.alert_engine is not None
    clock = Clock(T0 + timedelta(minutes=5))
    pipeline.alert_engine.clock = clock
    with session_scope(engine) as session:
        source_id = ensure_source(session, "wire").id
    assert source_id is not None
    return pipeline, clock, source_id, config, settings


def _outbox(engine, channel: str = "hook") -> list[Notification]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        query = select(Notification).where(Notification.channel == channel)
        return list(session.execute(query.order_by(Notification.id)).scalars())


def _states(engine) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        rows = session.execute(select(AlertState.status, func.count()).group_by(AlertState.status))
        return dict(rows.all())  # type: ignore[arg-type]


def test_a_flood_of_events_is_capped_with_one_summary(engine, server):
    pipeline, clock, source_id, config, settings = _setup(engine, server)
    pipeline.ingest(source_id, _unrelated_reports(12, seed=1))

    for channel in ("hook", "other"):
        sent = _outbox(engine, channel)
        events = [n for n in sent if n.event_id != 0]
        summaries = [n for n in sent if n.event_id == 0]
        assert len(events) == LIMIT and len(summaries) == 1
    assert _states(engine) == {"notified": LIMIT, "capped": 12 - LIMIT}
    summary = summaries[0].payload
    assert summary["kind"] == "overflow" and summary["suppressed_events"] == 12 - LIMIT
    assert len(summary["articles"]) == 12 - LIMIT  # each capped event, by title
    assert summaries[0].not_before.replace(tzinfo=UTC) == T0 + timedelta(hours=1)

    clock.now = T0 + timedelta(minutes=40)  # more in the same window: the summary grows
    pipeline.ingest(source_id, _unrelated_reports(3, seed=2))
    sent = _outbox(engine)
    assert [n.payload["suppressed_events"] for n in sent if n.event_id == 0] == [12 - LIMIT + 3]
    assert sum(1 for n in sent if n.event_id != 0) == LIMIT

    clock.now = T0 + timedelta(hours=1, minutes=1)  # the next window: notified again
    pipeline.ingest(source_id, _unrelated_reports(1, seed=3))
    assert sum(1 for n in _outbox(engine) if n.event_id != 0) == LIMIT + 1

    # The summary goes out like any notification (its window has ended).
    received: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    server.routes["/hook"] = server.routes["/other"] = hook
    worker = DeliveryWorker.from_config(engine, config, settings)
    asyncio.run(worker.run_once())
    assert {n.status for n in _outbox(engine)} == {"sent"}
    kinds = sorted(payload["kind"] for payload in received)
    assert kinds == ["event"] * 2 * (LIMIT + 1) + ["overflow"] * 2
    overflow = next(p for p in received if p["kind"] == "overflow")
    assert overflow["suppressed_events"] == 12 - LIMIT + 3
    assert overflow["title"].startswith(f"{12 - LIMIT + 3} more events matched rule floods")
