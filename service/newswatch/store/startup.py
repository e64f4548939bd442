"""Start-up work that one process at a time does: migrations and the config's sources.

Two processes started at the same instant on one store (replicas of a container, `run` and
`serve` together) would both create the tables and both insert the config's sources; the
loser died on a unique index (issue 16). Under this lock the second waits, then finds the
schema current and the sources there, and changes nothing.

Postgres: a session-level advisory lock, keyed by the schema, on a connection of its own (a
store in another schema of the same database does not wait). SQLite: an exclusive `flock`
on a file beside the database (a write transaction cannot serve: Alembic migrates through
connections of its own, which would wait for it). An in-memory SQLite store has one process.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from newswatch.log import get_logger

log = get_logger(__name__)

LOCK_NAME = "newswatch-startup"
_KEY = text("SELECT hashtext(:name || '.' || coalesce(current_schema(), ''))")


@contextlib.contextmanager
def startup_lock(engine: Engine) -> Iterator[None]:
    """Hold the store's start-up lock while inside; wait for it when another process has it."""
    if engine.dialect.name == "sqlite":
        with _file_lock(engine.url.database):
            yield
    else:
        with engine.connect() as conn, _advisory_lock(conn):
            yield


@contextlib.contextmanager
def _advisory_lock(conn: Connection) -> Iterator[None]:
    key = int(conn.execute(_KEY, {"name": LOCK_NAME}).scalar_one())
    taken = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one()
    if not taken:
        log.info("another process is starting on this store; waiting for it")
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
    conn.commit()  # the lock is the session's; no transaction stays open while it is held
    try:
        yield
    finally:
        if not conn.invalidated:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()


@contextlib.contextmanager
def _file_lock(database: str | None) -> Iterator[None]:
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    path = Path(database).expanduser()
    lock_path = path.with_name(path.name + ".startup-lock")
    with lock_path.open("a") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another process is starting on this store; waiting for it")
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
