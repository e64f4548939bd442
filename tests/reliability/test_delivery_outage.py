"""Delivery over long outages (issue 20, item 6): retries run on a time budget, not an
attempt count. With a fake clock: a webhook receiver down 6 hours, then back, gets every
notification once; one down longer than the budget gets them dead-lettered, which is logged
at error, counted in /metrics and shown on the sources page."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web
from sqlalchemy import Engine, func, select
from structlog.testing import capture_logs

from newswatch.alerts.config import ChannelConfig
from newswatch.alerts.delivery import DeliveryWorker
from newswatch.api import create_app
from newswatch.api.metrics import render_metrics
from newswatch.config import FileConfig, Settings
from newswatch.store.alert_models import Notification
from newswatch.store.columns import as_utc, utcnow
from newswatch.store.db import session_scope
from newswatch.store.outbox import enqueue
from tests.api_support import running
from tests.localserver import LocalServer

NOTIFICATIONS = 5


@dataclass
class FakeClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


class Receiver:
    """Answers 503 while the fake clock is before `down_until`, then 200; counts the 200s
    per Idempotency-Key."""

    def __init__(self, clock: FakeClock, down_until: datetime):
        self.clock = clock
        self.down_until = down_until
        self.refused = 0
        self.delivered: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        if self.clock.now < self.down_until:
            self.refused += 1
            return web.Response(status=503, text="down for maintenance")
        self.delivered[request.headers["Idempotency-Key"]] += 1
        return web.json_response({"ok": True})


def settings(**extra: object) -> Settings:
    # The defaults under test: 30 s base, 1 h cap, 24 h budget, no attempt cap.
    return Settings(_env_file=None, **extra)  # type: ignore[arg-type]


def queue(engine: Engine, count: int) -> None:
    with session_scope(engine) as session:
        for event_id in range(1, count + 1):
            payload = {"rule": "r", "event_id": event_id, "title": "t", "articles": []}
            enqueue(
                session, rule="r", channel="ops", event_id=event_id, revision=1, payload=payload
            )


def next_due(engine: Engine) -> datetime | None:
    with session_scope(engine) as session:
        due = session.execute(
            select(func.min(Notification.not_before)).where(Notification.status == "pending")
        ).scalar()
    return as_utc(due) if due is not None else None


def rows(engine: Engine) -> list[Notification]:
    with session_scope(engine) as session:
        return list(session.execute(select(Notification).order_by(Notification.id)).scalars())


async def deliver_until_done(worker: DeliveryWorker, engine: Engine, clock: FakeClock) -> int:
    """Run the worker, jumping the clock to each next retry; the passes it took."""
    passes = 0
    while (due := next_due(engine)) is not None:
        clock.now = max(clock.now, due)
        await worker.run_once()
        passes += 1
        assert passes < 1000, "delivery does not converge"
    await worker.aclose()
    return passes


def setup(
    engine: Engine, server: LocalServer, down_for: timedelta, channel_budget: str | None = None
) -> tuple[DeliveryWorker, FakeClock, Receiver]:
    clock = FakeClock(utcnow() + timedelta(seconds=1))
    receiver = Receiver(clock, down_until=clock.now + down_for)
    server.routes["/hook"] = receiver.handle
    channel = ChannelConfig(
        name="ops",
        type="webhook",
        url=server.url("/hook"),
        timeout=5,
        retry_budget=channel_budget,  # type: ignore[arg-type]
    )
    worker = DeliveryWorker.from_config(
        engine, FileConfig(channels=[channel]), settings(), clock=clock
    )
    queue(engine, NOTIFICATIONS)
    return worker, clock, receiver


def test_a_receiver_down_six_hours_gets_every_notification_once(engine, server):
    worker, clock, receiver = setup(engine, server, down_for=timedelta(hours=6))
    started = clock.now
    asyncio.run(deliver_until_done(worker, engine, clock))

    assert receiver.refused > NOTIFICATIONS * 8  # more than the old 8-attempt limit allowed
    assert receiver.delivered == {f"r:{i}:1": 1 for i in range(1, NOTIFICATIONS + 1)}
    for row in rows(engine):
        assert row.status == "sent"
        # Backoff capped at an hour: delivered within the hour after the receiver is back.
        assert row.sent_at is not None
        assert as_utc(row.sent_at) - started <= timedelta(hours=7)


def test_a_spent_budget_dead_letters_loudly(engine, server):
    """A channel's own budget (2 h) against a receiver down 10 h: dead at the budget's end,
    logged at error, counted in /metrics, listed on the sources page."""
    worker, clock, receiver = setup(
        engine, server, down_for=timedelta(hours=10), channel_budget="2h"
    )
    started = clock.now
    with capture_logs() as logs:
        asyncio.run(deliver_until_done(worker, engine, clock))

    assert not receiver.delivered
    dead = rows(engine)
    assert [n.status for n in dead] == ["dead"] * NOTIFICATIONS
    for row in dead:
        assert row.retry_until is not None
        budget_end = as_utc(row.retry_until)
        assert timedelta(hours=2) <= budget_end - started <= timedelta(hours=2, minutes=1)
        assert clock.now >= budget_end  # the last try was at the end of the budget
        assert row.last_error and "503" in row.last_error
    errors = [e for e in logs if e["log_level"] == "error"]
    assert errors and all(e["event"] == "notification dead-lettered" for e in errors)
    assert sum(len(e["ids"]) for e in errors) == NOTIFICATIONS

    payload, _ = render_metrics(engine)
    assert f"newswatch_outbox_dead {float(NOTIFICATIONS)}" in payload.decode()

    with running(create_app(engine, settings())) as client:
        page = client.get("/sources")
    assert page.status_code == 200
    assert f"{NOTIFICATIONS} notifications</strong> could not be delivered" in page.text
    assert page.text.count("data-notification-id=") == NOTIFICATIONS
