"""Run the scaled mode's roles (scheduler, fetch, deliver; any mix) in this process.

Start-up, once per store under the start-up lock (store/startup.py): the migrations (done
when the store was opened), procrastinate's tables, and for the scheduler the config's
sources. Then each role runs until SIGTERM/SIGINT: procrastinate workers finish the jobs
they run (up to the grace period), the delivery worker the sends under way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime
from typing import Any

from procrastinate import App, JobContext
from procrastinate.worker import Worker
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from newswatch.config import FileConfig, Settings
from newswatch.errors import ConfigError
from newswatch.lifecycle import STOP, stop_on_signal
from newswatch.log import get_logger
from newswatch.scaled.fetch_worker import FetchRuntime
from newswatch.scaled.queue import (
    CLAIM_DUE,
    POLL_BATCH,
    POLL_RETRY,
    PRUNE,
    RUNTIME,
    build_app,
    ensure_queue_tables,
    runtime_of,
)
from newswatch.scaled.scheduler import ClaimScheduler
from newswatch.store.db import normalise_url, session_scope
from newswatch.store.job_queue import FETCH_QUEUE, SCHEDULE_QUEUE
from newswatch.store.sources import sync_config_sources
from newswatch.store.startup import startup_lock

log = get_logger(__name__)

SHUTDOWN_GRACE_SECONDS = 60.0
CLAIM_EVERY_SECOND = "* * * * * *"  # croniter's sixth field: seconds
PRUNE_DAILY = "17 3 * * *"


def refuse_unless_postgres(database_url: str, roles: list[str]) -> None:
    """The scaled roles need Postgres: say so before the store is opened (or created)."""
    if make_url(normalise_url(database_url)).get_backend_name() != "postgresql":
        raise ConfigError(
            f"--role {', '.join(roles)} runs on a Postgres store only (the job queue and the "
            "claims live there); this store is SQLite: run `newswatch run` (every part in one "
            "process) or set DATABASE_URL to Postgres (docs/decisions/0161)",
            where="DATABASE_URL",
        )


async def _poll_batch(context: JobContext, source_ids: list[int], lease: str) -> None:
    runtime: FetchRuntime = runtime_of(context)
    await runtime.poll_batch(source_ids, datetime.fromisoformat(lease))


async def _claim_due(context: JobContext, timestamp: int) -> None:
    scheduler: ClaimScheduler = runtime_of(context)
    await scheduler.tick()


async def _prune(context: JobContext, timestamp: int) -> None:
    scheduler: ClaimScheduler = runtime_of(context)
    await scheduler.prune()


def register_tasks(app: App, scheduler: bool) -> None:
    """poll_batch on every app (the scheduler defers it by name); the periodic tasks on the
    scheduler's only, so fetch workers do not defer ticks."""
    app.task(name=POLL_BATCH, queue=FETCH_QUEUE, pass_context=True, retry=POLL_RETRY)(_poll_batch)
    if scheduler:
        claim = app.task(name=CLAIM_DUE, queue=SCHEDULE_QUEUE, pass_context=True)(_claim_due)
        app.periodic(cron=CLAIM_EVERY_SECOND, periodic_id="claim")(claim)
        prune = app.task(name=PRUNE, queue=SCHEDULE_QUEUE, pass_context=True)(_prune)
        app.periodic(cron=PRUNE_DAILY, periodic_id="prune")(prune)


async def run_roles(
    engine: Engine, config: FileConfig, settings: Settings, roles: list[str]
) -> None:
    """Run `roles` until SIGTERM/SIGINT."""
    await asyncio.to_thread(ensure_queue_tables, engine)
    if "scheduler" in roles:
        await asyncio.to_thread(_sync_sources, engine, config)
    stop = asyncio.Event()
    STOP.install()
    with stop_on_signal(stop):
        parts = [_role(name, engine, config, settings, stop) for name in roles]
        log.info("roles started", roles=roles)
        await asyncio.gather(*parts)
    log.info("roles stopped", roles=roles)


def _sync_sources(engine: Engine, config: FileConfig) -> None:
    with startup_lock(engine), session_scope(engine) as session:
        counts = sync_config_sources(session, config.sources)
    log.info("sources synced from config", **counts)


def _role(
    name: str, engine: Engine, config: FileConfig, settings: Settings, stop: asyncio.Event
) -> Coroutine[Any, Any, None]:
    if name == "scheduler":
        return _run_scheduler(engine, settings, stop)
    if name == "fetch":
        return _run_fetch(engine, config, settings, stop)
    return _run_deliver(engine, config, settings, stop)


async def _run_scheduler(engine: Engine, settings: Settings, stop: asyncio.Event) -> None:
    app = build_app(engine)
    register_tasks(app, scheduler=True)
    async with app.open_async():
        scheduler = ClaimScheduler(engine, settings, app)
        await _work(app, [SCHEDULE_QUEUE], 1, scheduler, stop)


async def _run_fetch(
    engine: Engine, config: FileConfig, settings: Settings, stop: asyncio.Event
) -> None:
    app = build_app(engine)
    register_tasks(app, scheduler=False)
    async with app.open_async(), FetchRuntime(engine, config, settings) as runtime:
        await _work(app, [FETCH_QUEUE], settings.fetch_jobs_per_worker, runtime, stop)


async def _work(
    app: App, queues: list[str], concurrency: int, runtime: object, stop: asyncio.Event
) -> None:
    """A procrastinate worker on `queues` until `stop`; then it finishes its jobs."""
    worker = Worker(
        app,
        queues=queues,
        concurrency=concurrency,
        install_signal_handlers=False,
        shutdown_graceful_timeout=SHUTDOWN_GRACE_SECONDS,
        additional_context={RUNTIME: runtime},
        # A finished job's row is deleted: 50,000 sources every 10 minutes make 144,000 a
        # day. Failed jobs stay for a look (the batch's sources are due again anyway).
        delete_jobs="successful",
    )
    running = asyncio.create_task(worker.run())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([running, stopping], return_when=asyncio.FIRST_COMPLETED)
    worker.stop()
    stopping.cancel()
    await running


async def _run_deliver(
    engine: Engine, config: FileConfig, settings: Settings, stop: asyncio.Event
) -> None:
    if not config.channels:
        log.warning("deliver: no channels in the config; nothing to send")
        await stop.wait()
        return
    from newswatch.alerts.delivery import DeliveryWorker

    await DeliveryWorker.from_config(engine, config, settings).run(stop)
