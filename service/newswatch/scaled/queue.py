"""The job queue: procrastinate on the store's Postgres, its queues, tasks and start-up.

Two queues: the scheduler's (its periodic claim of due sources, retention) and the fetch
workers' (`poll_batch`, one job per batch of claimed sources). procrastinate periodic tasks
are deferred once per tick however many schedulers run (a unique key per task and tick), so
a second scheduler is harmless; the claim statement's SKIP LOCKED makes it so as well.
"""

from __future__ import annotations

from typing import Any

from procrastinate import App, PsycopgConnector, RetryStrategy
from procrastinate.schema import SchemaManager
from sqlalchemy import Engine

from newswatch.store.job_queue import conninfo, create_queue_tables
from newswatch.store.startup import startup_lock

POLL_BATCH = "newswatch.poll_batch"
CLAIM_DUE = "newswatch.claim_due"
PRUNE = "newswatch.prune"
# Context key under which a worker hands its tasks the role's runtime (scaled/roles.py).
RUNTIME = "newswatch_runtime"
# A batch whose poll raised (the store away a moment) runs again; sources it polled already
# are skipped then (store/claims.py: the lease is the batch's token).
POLL_RETRY = RetryStrategy(max_attempts=3, wait=5)


def build_app(engine: Engine) -> App:
    """A procrastinate App on the store's database (same host, user, search_path)."""
    return App(connector=PsycopgConnector(conninfo=conninfo(engine), min_size=1, max_size=4))


def ensure_queue_tables(engine: Engine) -> None:
    """procrastinate's tables, created once per store under the start-up lock."""
    with startup_lock(engine):
        create_queue_tables(engine, SchemaManager.get_schema())


def runtime_of(context: Any) -> Any:
    """The role's runtime a task runs in (given to the worker as additional context)."""
    return context.additional_context[RUNTIME]
