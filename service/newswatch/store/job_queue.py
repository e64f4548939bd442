"""procrastinate's tables in the store: created at start-up, analysed, counted for /metrics.

procrastinate (the scaled mode's job queue, docs/decisions/0161) keeps its jobs in Postgres
tables of its own, created by its schema script. The script names no schema, so its tables
go where the store's go: the first schema of the connection's `search_path` (a deployment's
`options=-csearch_path=...`, a test's schema). It runs once per store, under the start-up
lock (store/startup.py), like the migrations; ANALYZE follows, because on a fresh jobs table
without statistics procrastinate's job fetch fell to 5.6 jobs/s (issue 16).
"""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from newswatch.log import get_logger

log = get_logger(__name__)

JOBS_TABLE = "procrastinate_jobs"
# The scaled mode's queues: named here, where /metrics reads their depth, so the API need
# not import procrastinate (scaled/queue.py defines the tasks on them).
SCHEDULE_QUEUE = "newswatch-schedule"
FETCH_QUEUE = "newswatch-fetch"
QUEUE_NAMES = frozenset({SCHEDULE_QUEUE, FETCH_QUEUE})
_EXISTS = text("SELECT to_regclass(:name) IS NOT NULL")
_QUEUE_DEPTH = text(
    "SELECT queue_name, status, count(*) FROM procrastinate_jobs"
    " WHERE status IN ('todo', 'doing') GROUP BY queue_name, status"
)


def conninfo(engine: Engine) -> str:
    """The libpq connection string of the store's engine (procrastinate connects with
    psycopg itself): the same host, database, user and options, such as the search_path."""
    url = make_url(engine.url.render_as_string(hide_password=False)).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def queue_tables_exist(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(_EXISTS, {"name": JOBS_TABLE}).scalar_one())


def create_queue_tables(engine: Engine, schema_sql: str) -> bool:
    """Run procrastinate's schema script unless its tables exist; analyse them. Call under
    the start-up lock. True when the tables were created now."""
    if queue_tables_exist(engine):
        return False
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        # A script of many statements, with no parameters: psycopg runs it as it is.
        cursor.execute(schema_sql)
        cursor.execute("ANALYZE procrastinate_jobs")
        cursor.close()
        raw.commit()
    finally:
        raw.close()
    log.info("job queue tables created")
    return True


def queue_depth(session: Session) -> dict[tuple[str, str], int] | None:
    """Jobs waiting ('todo') and running ('doing') per (queue, status); None without the
    queue's tables (an SQLite store, a Postgres one never run in the scaled mode)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    if not bool(session.execute(_EXISTS, {"name": JOBS_TABLE}).scalar_one()):
        return None
    return {(queue, status): int(n) for queue, status, n in session.execute(_QUEUE_DEPTH)}
