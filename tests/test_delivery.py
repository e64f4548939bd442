"""Durable delivery: faults at the receiver, and a process killed mid-delivery."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

from sqlalchemy import select

from newswatch.alerts.config import ChannelConfig
from newswatch.alerts.delivery import DeliveryWorker, backoff_delay
from newswatch.config import FileConfig, Settings
from newswatch.store.alert_models import Notification
from newswatch.store.columns import utcnow
from newswatch.store.db import session_scope
from newswatch.store.outbox import enqueue
from tests.alert_support import SECRET, webhook_receiver

FAST = {
    "NEWSWATCH_DELIVERY_BACKOFF_BASE": 0.05,
    "NEWSWATCH_DELIVERY_BACKOFF_MAX": 2.0,
    "NEWSWATCH_DELIVERY_MAX_ATTEMPTS": 8,
}


def settings(**extra: object) -> Settings:
    return Settings(_env_file=None, **{**FAST, **extra})  # type: ignore[arg-type]


def config_for(url: str, timeout: float = 1.0) -> FileConfig:
    channel = ChannelConfig(name="ops", type="webhook", url=url, secret=SECRET, timeout=timeout)
    return FileConfig(channels=[channel])


def queue_one(engine, event_id: int = 7, **kw: object) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        assert enqueue(
            session,
            rule="r",
            channel="ops",
            event_id=event_id,
            revision=1,
            payload={"rule": "r", "event_id": event_id, "title": "t <b>", "articles": []},
            **kw,  # type: ignore[arg-type]
        )


def rows(engine) -> list[Notification]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        return list(session.execute(select(Notification).order_by(Notification.id)).scalars())


def test_enqueue_is_idempotent_per_channel_and_key(engine):
    queue_one(engine)
    with session_scope(engine) as session:
        again = enqueue(session, rule="r", channel="ops", event_id=7, revision=1, payload={})
        other = enqueue(session, rule="r", channel="desk", event_id=7, revision=1, payload={})
    assert again is False and other is True
    assert [(n.channel, n.idempotency_key) for n in rows(engine)] == [
        ("ops", "r:7:1"),
        ("desk", "r:7:1"),
    ]


def test_faults_then_recovery_deliver_exactly_once(engine):
    with webhook_receiver() as receiver:
        receiver.script = ["500", "timeout", "close", "429"]
        queue_one(engine)
        worker = DeliveryWorker.from_config(engine, config_for(receiver.url()), settings())
        result = asyncio.run(worker.drain(timeout=30))
        assert result.sent == 1 and result.dead == 0
        assert len(receiver.accepted) == 1 and receiver.attempts == 5
        assert receiver.bad_signatures == 0
        (row,) = rows(engine)
        assert row.status == "sent" and row.attempts == 5 and row.response_status == 200


def test_retry_after_is_honoured(engine):
    """After a 429 with Retry-After: 1 the row waits about a second, not the tiny backoff."""
    with webhook_receiver() as receiver:
        receiver.script = ["429"]
        queue_one(engine)
        worker = DeliveryWorker.from_config(engine, config_for(receiver.url()), settings())
        before = utcnow()
        outcomes = asyncio.run(worker.run_once())
        assert outcomes == ["retry"]
        (row,) = rows(engine)
        assert row.status == "pending" and row.last_error == "HTTP 429"
        assert row.not_before - before >= timedelta(seconds=0.9)


def test_dead_letter_after_max_attempts_and_permanent_errors(engine):
    with webhook_receiver() as receiver:
        receiver.script = ["500"] * 10
        queue_one(engine, event_id=1)
        worker = DeliveryWorker.from_config(
            engine, config_for(receiver.url()), settings(NEWSWATCH_DELIVERY_MAX_ATTEMPTS=3)
        )
        result = asyncio.run(worker.drain(timeout=30))
        assert result.dead == 1 and receiver.attempts == 3
        # A 404 cannot get better by retrying: dead at once.
        queue_one(engine, event_id=2)
        worker = DeliveryWorker.from_config(
            engine, config_for(receiver.server.url("/gone")), settings()
        )
        asyncio.run(worker.drain(timeout=30))
    states = {(n.event_id, n.status, n.attempts) for n in rows(engine)}
    assert states == {(1, "dead", 3), (2, "dead", 1)}


def test_batch_key_sends_rows_together(engine):
    with webhook_receiver() as receiver:
        for event_id in (1, 2, 3):
            queue_one(engine, event_id=event_id, batch_key="r:digest:2026-11-22T10")
        queue_one(engine, event_id=4, not_before=utcnow() + timedelta(hours=1))
        worker = DeliveryWorker.from_config(engine, config_for(receiver.url()), settings())
        result = asyncio.run(worker.drain(timeout=10))
        assert result.sent == 1 and result.deferred == 1
        (message,) = receiver.accepted
        assert message["type"] == "batch"
        assert sorted(n["event_id"] for n in message["notifications"]) == [1, 2, 3]


class _Broken:
    name = "ops"

    async def send(self, payloads):  # type: ignore[no-untyped-def]
        raise RuntimeError("channel bug")

    async def aclose(self) -> None:
        return None


def test_a_channel_that_raises_is_a_failed_attempt(engine):
    queue_one(engine)
    worker = DeliveryWorker(engine, {"ops": _Broken()}, settings())  # type: ignore[dict-item]
    # A defect fails the same way every time: dead at once (tests/reliability has I/O errors).
    assert asyncio.run(worker.run_once()) == ["dead"]
    (row,) = rows(engine)
    assert row.status == "dead" and "channel bug" in (row.last_error or "")


def test_backoff_grows_and_is_capped():
    assert backoff_delay(1, 10, 1000) < 15
    assert 20 <= backoff_delay(3, 10, 1000) < 60  # 40 s, jittered by 0.5-1.5
    assert backoff_delay(30, 10, 1000) <= 1000


SENDER = """
import asyncio, sys
from newswatch.alerts.delivery import DeliveryWorker
from newswatch.alerts.config import ChannelConfig
from newswatch.config import FileConfig, Settings
from newswatch.store.db import make_engine
engine = make_engine(sys.argv[1])
config = FileConfig(channels=[ChannelConfig(name="ops", type="webhook", url=sys.argv[2],
                                            secret=sys.argv[3])])
worker = DeliveryWorker.from_config(engine, config, Settings(_env_file=None))
print(asyncio.run(worker.drain(timeout=20)))
"""


def _deliver_in_child(store_url: str, url: str, crash_at: str | None) -> int:
    env = dict(os.environ)
    env.pop("NEWSWATCH_TEST_CRASH_AT", None)
    # The restarted sender takes over the dead one's claim at once (instead of after 120 s).
    env["NEWSWATCH_DELIVERY_LEASE"] = "0"
    if crash_at:
        env["NEWSWATCH_TEST_CRASH_AT"] = crash_at
    child = subprocess.run(
        [sys.executable, "-c", SENDER, store_url, url, SECRET],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return child.returncode


def test_killed_before_sending_loses_nothing_and_sends_once(engine, store_url):
    with webhook_receiver() as receiver:
        queue_one(engine)
        assert _deliver_in_child(store_url, receiver.url(), "before_send") == -9
        assert receiver.attempts == 0 and rows(engine)[0].status == "sending"
        assert _deliver_in_child(store_url, receiver.url(), None) == 0
        assert receiver.attempts == 1 and len(receiver.accepted) == 1
        assert rows(engine)[0].status == "sent"


def test_killed_after_sending_resends_with_the_same_key(engine, store_url):
    with webhook_receiver() as receiver:
        queue_one(engine)
        assert _deliver_in_child(store_url, receiver.url(), "after_send") == -9
        assert receiver.attempts == 1 and rows(engine)[0].status == "sending"
        assert _deliver_in_child(store_url, receiver.url(), None) == 0
        # Sent twice, but with one Idempotency-Key: the receiver kept it once.
        assert receiver.attempts == 2 and len(receiver.accepted) == 1
        assert rows(engine)[0].status == "sent"


def test_metrics_report_outbox_depth_and_age(engine):
    from newswatch.api.metrics import render_metrics

    queue_one(engine, event_id=1)
    queue_one(engine, event_id=2)
    text = render_metrics(engine)[0].decode()
    assert "newswatch_outbox_depth 2.0" in text
    age = next(
        line for line in text.splitlines() if line.startswith("newswatch_outbox_oldest_pending")
    )
    assert 0 <= float(age.split()[-1]) < 600


def test_metrics_count_attempts_by_channel_and_outcome(engine):
    from newswatch.prometheus_registry import NOTIFICATIONS as COUNTER

    def count(outcome: str) -> float:
        return COUNTER.labels("ops", outcome)._value.get()

    before = {o: count(o) for o in ("retry", "sent")}
    with webhook_receiver() as receiver:
        receiver.script = ["500"]
        queue_one(engine)
        worker = DeliveryWorker.from_config(engine, config_for(receiver.url()), settings())
        assert asyncio.run(worker.drain(timeout=30)).sent == 1
    assert count("retry") - before["retry"] == 1 and count("sent") - before["sent"] == 1


def test_a_wake_from_another_thread_sends_at_once(engine):
    """Big ingest batches commit in a worker thread and wake the delivery worker from there;
    with polling switched off, only that wake-up can make the notification go out."""
    with webhook_receiver() as receiver:
        worker = DeliveryWorker.from_config(engine, config_for(receiver.url()), settings())
        worker.poll_interval = 3600
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        thread = threading.Thread(target=loop.run_until_complete, args=(worker.run(stop),))
        thread.start()
        try:
            for _ in range(2000):  # bounded waits below; not timing assertions
                if worker._loop is not None:
                    break
                time.sleep(0.01)
            time.sleep(0.2)  # the worker is idle in its wait now
            queue_one(engine)
            worker.wake()  # from this thread, as Pipeline.on_enqueued does after a commit
            for _ in range(2000):
                if receiver.accepted:
                    break
                time.sleep(0.01)
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join()
            loop.close()
        assert len(receiver.accepted) == 1
    assert rows(engine)[0].status == "sent"


def test_a_claim_of_a_live_worker_is_not_taken_over_before_the_lease(engine):
    """`replay` draining beside a running service must not re-send what the service is
    sending: a fresh claim stays with its worker; an expired one is taken over."""
    with webhook_receiver() as receiver:
        queue_one(engine)
        other = DeliveryWorker.from_config(engine, config_for(receiver.url()), settings())
        (claimed,) = other.claim(utcnow())  # another process, in the middle of sending
        worker = DeliveryWorker.from_config(
            engine, config_for(receiver.url()), settings(NEWSWATCH_DELIVERY_LEASE=120)
        )
        result = asyncio.run(worker.drain(timeout=1))
        assert result.sent == 0 and receiver.attempts == 0
        assert rows(engine)[0].status == "sending"
        expired = DeliveryWorker.from_config(
            engine, config_for(receiver.url()), settings(NEWSWATCH_DELIVERY_LEASE=0)
        )
        result = asyncio.run(expired.drain(timeout=10))
        assert result.sent == 1 and len(receiver.accepted) == 1
        assert claimed.ids == [rows(engine)[0].id] and rows(engine)[0].status == "sent"
