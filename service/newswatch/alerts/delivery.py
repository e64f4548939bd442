"""The delivery worker: sends what the outbox holds, with retries, and records the outcome.

Life of a row: pending -> sending (claimed) -> sent, or back to pending with a later
`not_before` after a failure, or dead once its retry budget is spent. The budget is a time
(default 24 hours, per channel `retry_budget`) counted from the first failure, not a number of
attempts: a receiver down for hours still gets every notification when it is back. Backoff
doubles up to NEWSWATCH_DELIVERY_BACKOFF_MAX (1 hour), and the last retry falls at the end of
the budget. A dead row is logged at `error` and counted in /metrics. A process killed while a row is
"sending" leaves it claimed; once the claim is older than the lease (NEWSWATCH_DELIVERY_LEASE,
longer than any send may take) a worker puts it back to pending (the receiver may see that
notification twice, with the same Idempotency-Key). A row being sent by another live process
(`replay` beside a running service) is left to it. A row never claimed is sent exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from newswatch.alerts.channels import Channel, SendResult, build_channel
from newswatch.config import FileConfig, Settings
from newswatch.log import get_logger
from newswatch.prometheus_registry import NOTIFICATIONS as SENT_METRIC
from newswatch.store.columns import as_utc, utcnow
from newswatch.store.db import session_scope
from newswatch.store.deliveries import (
    claim_due,
    pending_counts,
    record_outcome,
    release_expired_claims,
    retry_due_by,
)

log = get_logger(__name__)
CLAIM_LIMIT = 100
# Seconds between two looks for rows whose claim has expired.
RECOVER_EVERY = 30.0
# Test hook: kill the process at a named point, to prove that nothing is lost.
CRASH_ENV = "NEWSWATCH_TEST_CRASH_AT"


@dataclass
class Claimed:
    channel: str
    ids: list[int]
    payloads: list[dict[str, Any]]
    attempts: int
    retry_until: datetime | None = None  # the earliest of the rows' (None: none failed yet)


@dataclass
class DrainResult:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    deferred: int = 0  # still waiting for their time (digests, quiet hours, group_wait)
    by_channel: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"{self.sent} notifications sent, {self.failed} to retry, {self.dead} dead, "
            f"{self.deferred} deferred"
        )


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter in [0.5, 1.5) of the step."""
    step = min(cap, base * (2 ** max(0, attempts - 1)))
    return min(cap, step * (0.5 + random.random()))


def escaped_failure(channel: str, exc: Exception) -> SendResult:
    """The outcome of an exception a channel did not turn into a SendResult itself.

    Channels classify what receivers and networks do; an exception that escapes is I/O
    trouble they missed (OSError, TimeoutError: worth a retry) or a defect in our code
    (ValueError, TypeError, ...) that fails the same way every time: permanent, and an error
    in the log rather than a retry budget spent on it.
    """
    error = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError):
        log.warning("channel failed", channel=channel, error=error)
        return SendResult(False, error=error)
    log.exception("channel failed", channel=channel, error=error)
    return SendResult(False, error=error, permanent=True)


def _crash_if(point: str) -> None:
    if os.environ.get(CRASH_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


class DeliveryWorker:
    poll_interval = 1.0  # seconds between looks at the outbox when nobody wakes the worker

    def __init__(
        self,
        engine: Engine,
        channels: dict[str, Channel],
        settings: Settings,
        *,
        retry_budgets: dict[str, float] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.engine = engine
        self.channels = channels
        self.settings = settings
        # Seconds of retrying per channel name (others: NEWSWATCH_DELIVERY_RETRY_BUDGET).
        self.retry_budgets = retry_budgets or {}
        self.clock = clock
        self._recovered_at = 0.0
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_config(
        cls,
        engine: Engine,
        config: FileConfig,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> DeliveryWorker:
        channels = {c.name: build_channel(c, settings) for c in config.channels}
        budgets = {
            c.name: c.retry_budget.total_seconds() for c in config.channels if c.retry_budget
        }
        return cls(engine, channels, settings, retry_budgets=budgets, clock=clock)

    def wake(self) -> None:
        """Send what was just queued without waiting for the next poll. Safe from any thread:
        large ingest batches commit in a worker thread, and asyncio.Event is not thread-safe
        (a set() from another thread would not wake the loop until its next poll)."""
        event, loop = self._wake, self._loop
        if event is None or loop is None or loop.is_closed():
            return
        try:
            same_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            event.set()
        else:
            # RuntimeError: the loop closed meanwhile (the service is stopping).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    # --- the store side -------------------------------------------------------------
    def recover(self) -> int:
        """Rows claimed longer ago than the lease (their worker died before recording an
        outcome) go back to pending. Rows another live process is sending are left alone."""
        expired = self.clock() - timedelta(seconds=self.settings.delivery_lease)
        with session_scope(self.engine) as session:
            released = release_expired_claims(session, expired)
        self._recovered_at = time.monotonic()
        return released

    def _recover_now_and_then(self) -> None:
        if time.monotonic() - self._recovered_at >= RECOVER_EVERY:
            self.recover()

    def claim(self, now: datetime) -> list[Claimed]:
        """Due rows, marked as being sent; rows sharing (channel, batch key) form one message."""
        with session_scope(self.engine) as session:
            rows = claim_due(session, now, CLAIM_LIMIT)
        groups: dict[tuple[str, str], Claimed] = {}
        for r in rows:
            key = (r.channel, r.batch_key or f"id:{r.id}")
            group = groups.setdefault(key, Claimed(r.channel, [], [], r.attempts))
            group.ids.append(r.id)
            group.payloads.append(r.payload)
            group.attempts = max(group.attempts, r.attempts)
            if r.retry_until is not None:
                until = as_utc(r.retry_until)
                group.retry_until = min(group.retry_until or until, until)
        return list(groups.values())

    def retry_budget(self, channel: str) -> float:
        return self.retry_budgets.get(channel, self.settings.delivery_retry_budget)

    def _out_of_retries(self, group: Claimed, attempts: int, now: datetime) -> bool:
        cap = self.settings.delivery_max_attempts
        if cap is not None and attempts >= cap:
            return True
        return group.retry_until is not None and now >= group.retry_until

    def record(self, group: Claimed, result: SendResult, now: datetime) -> str:
        attempts = group.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "response_status": result.status,
            "claimed_at": None,
        }
        if result.ok:
            values.update(status="sent", sent_at=now, last_error=None)
            outcome = "sent"
        elif result.permanent or self._out_of_retries(group, attempts, now):
            values.update(status="dead", last_error=result.error)
            outcome = "dead"
        else:
            s = self.settings
            delay = backoff_delay(attempts, s.delivery_backoff_base, s.delivery_backoff_max)
            if result.retry_after is not None:
                delay = min(max(result.retry_after, 0.0), s.delivery_backoff_max)
            until = group.retry_until
            if until is None:  # the first failure starts the budget
                until = now + timedelta(seconds=self.retry_budget(group.channel))
                values["retry_until"] = until
            # The last retry falls at the end of the budget, not after it.
            values.update(
                status="pending",
                not_before=min(now + timedelta(seconds=delay), until),
                last_error=result.error,
            )
            outcome = "retry"
        with session_scope(self.engine) as session:
            record_outcome(session, group.ids, values)
        SENT_METRIC.labels(group.channel, outcome).inc(len(group.ids))
        # A dead letter is a notification nobody will get unless an operator acts.
        emit = log.error if outcome == "dead" else log.info
        emit(
            "notification dead-lettered" if outcome == "dead" else "notification",
            channel=group.channel,
            ids=group.ids,
            outcome=outcome,
            status=result.status,
            error=result.error,
            attempts=attempts,
        )
        return outcome

    # --- sending --------------------------------------------------------------------
    async def _send(self, group: Claimed) -> str:
        channel = self.channels.get(group.channel)
        if channel is None:
            result = SendResult(False, error=f"no channel named {group.channel!r}", permanent=True)
        else:
            _crash_if("before_send")
            try:
                result = await channel.send(group.payloads)
            except Exception as exc:  # a channel bug must not stop the worker
                result = escaped_failure(group.channel, exc)
            if result.ok:
                _crash_if("after_send")
        return await asyncio.to_thread(self.record, group, result, self.clock())

    # The store work runs in threads: it may wait (a connection, SQLite's lock) and the event
    # loop polls sources and answers health checks meanwhile.
    async def run_once(self) -> list[str]:
        groups = await asyncio.to_thread(self.claim, self.clock())
        if not groups:
            return []
        return list(await asyncio.gather(*(self._send(g) for g in groups)))

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: send what is due, then sleep until woken or a second passes."""
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.recover)
        while not stop.is_set():
            try:
                await asyncio.to_thread(self._recover_now_and_then)
                if await self.run_once():
                    continue
            except Exception:  # the store may be briefly unavailable; try again shortly
                log.exception("delivery pass failed")
            self._wake.clear()
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(
                waiters, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in waiters:
                waiter.cancel()
        await self.aclose()

    async def drain(self, timeout: float) -> DrainResult:
        """Send everything due now (retrying failures) until done or `timeout` seconds."""
        self.recover()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        result = DrainResult()
        while loop.time() < deadline:
            self._recover_now_and_then()
            outcomes = await self.run_once()
            for outcome in outcomes:
                if outcome == "sent":
                    result.sent += 1
                elif outcome == "dead":
                    result.dead += 1
            if not outcomes:
                if not self._pending_soon(deadline - loop.time()):
                    break
                await asyncio.sleep(0.2)
        counts = self._status_counts()
        result.failed = counts.get("retry", 0)
        result.deferred = counts.get("deferred", 0)
        await self.aclose()
        return result

    def _pending_soon(self, within: float) -> bool:
        """Whether a pending row becomes due within `within` seconds (a retry to wait for)."""
        limit = self.clock() + timedelta(seconds=max(0.0, within))
        with session_scope(self.engine) as session:
            return retry_due_by(session, limit)

    def _status_counts(self) -> dict[str, int]:
        with session_scope(self.engine) as session:
            return pending_counts(session)

    async def aclose(self) -> None:
        for channel in self.channels.values():
            await channel.aclose()


def drain_outbox(
    engine: Engine, config: FileConfig, settings: Settings, timeout: float
) -> DrainResult:
    """Send what is queued (used by `newswatch replay` before it exits)."""
    worker = DeliveryWorker.from_config(engine, config, settings)
    return asyncio.run(worker.drain(timeout))
