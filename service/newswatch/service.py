"""The long-running service (`newswatch run`) and the one-pass mode (`run --once`).

One APScheduler (3.x, in-memory job store: never shared between processes) per process; a
job per source with its interval (plus jitter) or cron; `max_instances=1` so a source never
runs twice at once. SIGTERM/SIGINT stop new work, let in-flight polls finish, then exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from newswatch.config import FileConfig, Settings
from newswatch.fetch.http import Fetcher
from newswatch.fetch.page_sources import register as register_pages
from newswatch.fetch.poll import Poller, PollOutcome
from newswatch.lifecycle import STOP, stop_on_signal
from newswatch.log import get_logger
from newswatch.pipeline import Pipeline
from newswatch.poll_runs import PollRuns
from newswatch.prometheus_registry import SCHEDULER_LAST_TICK, SOURCES_IN_ERROR
from newswatch.status_board import StatusBoard
from newswatch.store.db import session_scope
from newswatch.store.gauges import sources_in_error
from newswatch.store.schedule import enabled_snapshot
from newswatch.store.sources import SourceSnapshot, schedulable_sources, sync_config_sources
from newswatch.store.startup import startup_lock

if TYPE_CHECKING:
    # Imported by `run` alone: `run --once` schedules nothing and prunes nothing.
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.base import BaseTrigger

log = get_logger(__name__)

RESYNC_SECONDS = 60  # how often sources added or changed elsewhere (CLI) are picked up
PRUNE_EVERY = timedelta(days=1)  # retention (newswatch/retention.py)
PRUNE_FIRST_AFTER = timedelta(minutes=10)  # after start, when the first polls have settled
SHUTDOWN_GRACE_SECONDS = 60
# At stop, polls under way (fetching, parsing, or queued for the writer) get this long; the
# rest are cancelled. Nothing is lost: a poll's validators (ETag) are written only with its
# articles, so a poll not written is simply fetched again at the next start. With the
# writer's batch under way (bounded: NEWSWATCH_WRITE_BATCH_ENTRIES) and the HTTP server's
# 3 s, SIGTERM ends the service within 10 s under full load (docs/decisions/0087).
STOP_POLLS_GRACE_SECONDS = 5.0


@dataclass
class ServiceStatus:
    """What the health endpoint reports about the scheduler; published on `board` for the
    API's process, which serves it."""

    scheduler_running: bool = False
    last_tick: float | None = None  # time.time() of the last scheduler activity
    started_at: float = field(default_factory=time.time)
    board: StatusBoard | None = None

    def tick(self) -> None:
        self.last_tick = time.time()
        SCHEDULER_LAST_TICK.set(self.last_tick)
        self._publish()

    def set_running(self, running: bool) -> None:
        self.scheduler_running = running
        self._publish()

    def _publish(self) -> None:
        if self.board is not None:
            self.board.publish(running=self.scheduler_running, last_tick=self.last_tick)


def trigger_for(source: SourceSnapshot) -> BaseTrigger:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if source.cron:
        return CronTrigger.from_crontab(source.cron, timezone=UTC)
    seconds = source.interval.total_seconds()
    # Default jitter: a tenth of the interval, so sources added together spread out.
    jitter = source.options.get("jitter_seconds")
    jitter = int(jitter if jitter is not None else max(1, seconds // 10))
    return IntervalTrigger(seconds=seconds, jitter=jitter, timezone=UTC)


def first_run_time(source: SourceSnapshot, now: datetime, spread: float) -> datetime:
    """Resume a stored schedule; new and overdue sources start soon, spread out."""
    if source.next_fetch_at and source.next_fetch_at > now:
        return source.next_fetch_at
    return now + timedelta(seconds=random.uniform(0, min(spread, source.interval.total_seconds())))


class Service:
    def __init__(
        self,
        engine: Engine,
        config: FileConfig,
        settings: Settings,
        *,
        pipeline: Pipeline | None = None,
    ):
        self.engine = engine
        self.config = config
        self.settings = settings
        self.pipeline = pipeline or Pipeline(engine, config, settings)
        self.status = ServiceStatus()
        self.stop_event = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._runs = PollRuns(self._poll_source, self._inflight)
        self._scheduled: dict[int, SourceSnapshot] = {}
        self.scheduler: AsyncIOScheduler | None = None
        self.poller: Poller | None = None
        # Other stages' long-running parts (delivery worker, HTTP server): started with the
        # service, each given the stop event.
        self.companions: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = []
        self.failure: Exception | None = None

    def sync_sources(self) -> list[SourceSnapshot]:
        # Under the store's start-up lock: a second process starting at the same instant
        # finds the sources this one inserted, rather than inserting them again.
        with startup_lock(self.engine), session_scope(self.engine) as session:
            counts = sync_config_sources(session, self.config.sources)
        log.info("sources synced from config", **counts)
        return self.load_sources()

    def load_sources(self) -> list[SourceSnapshot]:
        with session_scope(self.engine) as session:
            return schedulable_sources(session)

    async def run_once(
        self, on_done: Callable[[PollOutcome], None] | None = None
    ) -> list[PollOutcome]:
        """Poll every enabled source once, concurrently; return when all are done. After
        SIGTERM/SIGINT (or `stop_event`) no new poll starts and those still waiting for their
        host's turn are dropped (they sent nothing); those under way finish."""
        with stop_on_signal(self.stop_event):
            return await self._poll_once(on_done)

    async def _poll_once(
        self, on_done: Callable[[PollOutcome], None] | None = None
    ) -> list[PollOutcome]:
        sources = self.sync_sources()
        async with Fetcher(self.settings) as fetcher, self._make_poller(fetcher) as poller:
            self.poller = poller

            # Every poll starts at once: the bound on requests under way
            # (NEWSWATCH_HTTP_MAX_CONNECTIONS) is the fetcher's, taken once a host's gate
            # releases a request. A bound on polls here was held by polls waiting for a busy
            # host and held up every other host (docs/decisions/0111).
            async def one(source: SourceSnapshot) -> PollOutcome | None:
                if self.stop_event.is_set():
                    return None
                try:
                    outcome = await poller.poll(source)
                except asyncio.CancelledError:
                    if _task_cancelled():
                        raise
                    return None  # dropped at stop while waiting for its host: sent nothing
                if on_done:
                    on_done(outcome)
                return outcome

            polls = asyncio.gather(*(one(s) for s in sources))
            stopping = asyncio.create_task(self._drop_waiting_on_stop(fetcher))
            try:
                outcomes = await polls
            finally:
                stopping.cancel()
        self._update_error_gauge()
        polled = [o for o in outcomes if o is not None]
        if len(polled) < len(sources):
            log.info("stopped before polling every source", skipped=len(sources) - len(polled))
        return polled

    async def _drop_waiting_on_stop(self, fetcher: Fetcher) -> None:
        """At stop, polls still waiting for their host's turn have sent nothing: drop them
        rather than serve a saturated host's queue; those under way finish."""
        await self.stop_event.wait()
        fetcher.cancel_waiting()

    def _make_poller(self, fetcher: Fetcher) -> Poller:
        poller = Poller(fetcher, self.pipeline, self.settings)
        for register in POLLER_PLUGINS:
            register(poller)
        return poller

    async def run(self, install_signals: bool = True) -> None:
        """Run until SIGTERM/SIGINT (or `stop_event` is set). `install_signals=False` leaves
        the process's signal handlers alone (an embedding program owns them)."""
        if install_signals:
            STOP.install()
        with stop_on_signal(self.stop_event) if install_signals else contextlib.nullcontext():
            await self._run()

    async def _run(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        sources = self.sync_sources()
        async with Fetcher(self.settings) as fetcher, self._make_poller(fetcher) as poller:
            self.poller = poller
            self.scheduler = AsyncIOScheduler(timezone=UTC)
            self.scheduler.start()
            self.status.set_running(True)
            self._reschedule(sources)
            self.scheduler.add_job(
                self._resync,
                IntervalTrigger(seconds=RESYNC_SECONDS),
                id="resync",
                max_instances=1,
                coalesce=True,
            )
            self.scheduler.add_job(
                self._prune_job,
                IntervalTrigger(seconds=PRUNE_EVERY.total_seconds()),
                id="retention",
                max_instances=1,
                coalesce=True,
                next_run_time=datetime.now(UTC) + PRUNE_FIRST_AFTER,
            )
            self.status.tick()
            log.info("service started", sources=len(sources))
            companions = [asyncio.create_task(c(self.stop_event)) for c in self.companions]
            for task in companions:
                task.add_done_callback(self._companion_done)
            await self.stop_event.wait()
            log.info("stopping: waiting for in-flight fetches", inflight=len(self._inflight))
            # Pause first: APScheduler's shutdown cancels running coroutine jobs.
            self.scheduler.pause()
            # Polls still waiting for their host's turn have sent nothing: drop them now
            # rather than serve a saturated host's queue through the grace period.
            fetcher.cancel_waiting()
            await self._finish_or_drop_polls()
            self.scheduler.shutdown(wait=False)
            self.status.set_running(False)
            for task in companions:
                try:
                    await asyncio.wait_for(task, timeout=SHUTDOWN_GRACE_SECONDS)
                except (TimeoutError, Exception):
                    log.exception("companion did not stop cleanly")
        log.info("service stopped")
        if self.failure is not None:
            raise self.failure

    async def _finish_or_drop_polls(self) -> None:
        """Let polls under way finish for STOP_POLLS_GRACE_SECONDS, then cancel the rest: a
        cancelled poll records nothing (its queued write is skipped by the writer), so the
        source is polled again at the next start. A write the writer has begun commits."""
        if not self._inflight:
            return
        _done, late = await asyncio.wait(self._inflight, timeout=STOP_POLLS_GRACE_SECONDS)
        if not late:
            return
        log.warning(
            "stopping: polls still under way are dropped; polled again at the next start",
            dropped=len(late),
            grace_seconds=STOP_POLLS_GRACE_SECONDS,
        )
        for task in late:
            task.cancel()
        await asyncio.wait(late, timeout=SHUTDOWN_GRACE_SECONDS)

    def _companion_done(self, task: asyncio.Task[None]) -> None:
        """A companion (HTTP server, delivery worker) that dies takes the service down:
        running without health checks or without deliveries would fail silently."""
        if task.cancelled() or self.stop_event.is_set():
            return
        exc = task.exception()
        self.failure = RuntimeError(f"a part of the service stopped: {exc!r}")
        log.error("companion failed; stopping", error=repr(exc))
        self.stop_event.set()

    def _reschedule(self, sources: list[SourceSnapshot]) -> None:
        assert self.scheduler is not None
        now = datetime.now(UTC)
        wanted = {s.id: s for s in sources}
        for source_id in list(self._scheduled):
            if source_id not in wanted:
                self.scheduler.remove_job(f"source-{source_id}")
                del self._scheduled[source_id]
        for source in sources:
            old = self._scheduled.get(source.id)
            if old and (old.url, old.interval, old.cron, old.kind, old.options) == (
                source.url,
                source.interval,
                source.cron,
                source.kind,
                source.options,
            ):
                continue
            self.scheduler.add_job(
                self._poll_job,
                trigger_for(source),
                args=[source.id],
                id=f"source-{source.id}",
                name=source.name,
                replace_existing=True,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=first_run_time(source, now, self.settings.first_run_spread),
            )
            self._scheduled[source.id] = source

    async def _resync(self) -> None:
        self.status.tick()
        sources = await asyncio.to_thread(self.load_sources)
        self._reschedule(sources)
        await asyncio.to_thread(self._update_error_gauge)

    async def _prune_job(self) -> None:
        from newswatch.retention import prune

        self.status.tick()
        try:
            await asyncio.to_thread(prune, self.engine, self.settings)
        except Exception:
            log.exception("retention failed; tried again tomorrow")

    async def _poll_job(self, source_id: int) -> None:
        self.status.tick()
        if self.stop_event.is_set() or self.poller is None:
            return
        # Returns at once: a poll waiting for its host's turn must not hold the job, or the
        # scheduler skips the source's next runs ("maximum number of running instances").
        self._runs.ask(source_id)

    async def _poll_source(self, source_id: int) -> bool:
        """Poll once; True when it went well (an ask that came meanwhile may run now)."""
        if self.stop_event.is_set() or self.poller is None:
            return False
        try:
            fresh = await asyncio.to_thread(self._fresh_snapshot, source_id)
            if fresh is None:
                return False
            if (
                fresh.consecutive_errors
                and fresh.next_fetch_at
                and fresh.next_fetch_at > datetime.now(UTC) + timedelta(seconds=5)
            ):
                # Backing off (errors or Retry-After): run when the wait is over instead. (A
                # source without errors runs when asked: its next_fetch_at, counted from its
                # last answer, runs behind its trigger when it waited for its host's turn.)
                self._move_next_run(source_id, fresh.next_fetch_at)
                return False
            outcome = await self.poller.poll(fresh)
            if outcome.error and self.scheduler is not None:
                after = await asyncio.to_thread(self._fresh_snapshot, source_id)
                if after and after.next_fetch_at:
                    self._move_next_run(source_id, after.next_fetch_at)
                return False
            return True
        except Exception:
            log.exception("poll failed", source_id=source_id)
            return False

    def _move_next_run(self, source_id: int, when: datetime) -> None:
        if self.scheduler is None or not self.scheduler.running:
            return
        job = self.scheduler.get_job(f"source-{source_id}")
        if job is not None:
            job.modify(next_run_time=when)

    def _fresh_snapshot(self, source_id: int) -> SourceSnapshot | None:
        with session_scope(self.engine) as session:
            return enabled_snapshot(session, source_id)

    def _update_error_gauge(self) -> None:
        with session_scope(self.engine) as session:
            SOURCES_IN_ERROR.set(sources_in_error(session))


def _task_cancelled() -> bool:
    """Whether the running task itself is being cancelled (not a host gate dropping a wait)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


# Registration functions of other kinds of source: each takes a Poller and adds its handlers.
POLLER_PLUGINS: list[Callable[[Poller], None]] = [register_pages]  # page, sitemap, full_text


def build_service(
    engine: Engine, config: FileConfig, settings: Settings, *, serve_http: bool = True
) -> Service:
    """The service with every stage's companions (delivery worker, HTTP server) attached."""
    service = Service(engine, config, settings)
    if config.channels:
        from newswatch.alerts.delivery import DeliveryWorker

        worker = DeliveryWorker.from_config(engine, config, settings)
        service.pipeline.on_enqueued.append(worker.wake)
        service.companions.append(worker.run)
    if serve_http:
        from newswatch.api.process import ApiProcess

        # The HTTP port is served by processes of their own: a probe front that answers
        # liveness probes from the heartbeats and hands every other connection to the API
        # process (`run --role api`). The API's load takes neither ingestion's interpreter
        # lock nor its connections, and neither side's work delays a probe
        # (docs/decisions/0083-api-process.md, 0089-probe-front.md).
        service.status.board = StatusBoard.create()
        service.companions.append(ApiProcess(settings, service.status.board).run)
    return service
