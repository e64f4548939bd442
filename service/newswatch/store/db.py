"""Engine, sessions and migrations for SQLite (default) and Postgres."""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    create_engine,
    event,
    insert,
    inspect,
    text,
    update,
)
from sqlalchemy.engine import ExceptionContext, ExecutionContext, make_url
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.dml import Insert, Update
from sqlmodel import Session

from newswatch import errors
from newswatch.store.executemany import executemany, executemany_rows
from newswatch.store.startup import startup_lock

if TYPE_CHECKING:
    import psycopg
    from alembic.config import Config as AlembicConfig

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept postgres:// and postgresql:// and use the psycopg 3 driver for both."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


SQLITE_CACHE_MB = 64
SQLITE_BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another
# SQLite calls the statement-deadline check every this many virtual-machine steps (~1 ms).
SQLITE_DEADLINE_STEPS = 10_000


def _sqlite_pragmas(
    dbapi_connection: sqlite3.Connection,
    _record: ConnectionPoolEntry,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (CLI, API) work while the service writes; the busy timeout makes
    # writers wait for each other instead of failing at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # SQLite's default page cache is 2 MiB; the indexes of a store of 100,000 articles are far
    # larger, and inserts with random keys (hashes, GUIDs) then read a page from the OS for
    # each. With 64 MiB a connection (allocated as used) the cost per article stays flat.
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_MB * 1024}")
    cursor.close()


SQLITE_BUSY = 5
SQLITE_READONLY = 8  # the primary result code; extended ones (moved, recovery ...) share it
PG_READ_ONLY_TRANSACTION = "25006"
PG_LOCK_NOT_AVAILABLE = "55P03"


def _reopen_after_readonly(context: ExceptionContext) -> None:
    """A connection that refused a write as read-only is thrown away, with every other
    pooled one: SQLite opens a file it may not write read-only and the connection stays so
    after the file is writable again (until a restart, before this); a Postgres session
    begun read-only (a standby, default_transaction_read_only) stays read-only too. The
    statement still fails; the next one gets a fresh connection."""
    error = context.original_exception
    code = getattr(error, "sqlite_errorcode", None)
    state = getattr(error, "sqlstate", None)
    if (code is not None and code & 0xFF == SQLITE_READONLY) or state == PG_READ_ONLY_TRANSACTION:
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = True


def _sqlite_statement_deadline(engine: Engine, seconds: float) -> None:
    """SQLite has no statement timeout: a progress handler interrupts a statement (and the
    fetching of its rows) once it has run `seconds` ("interrupted", an OperationalError)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _arm(
        conn: Connection,
        _cursor: DBAPICursor,
        _statement: str,
        _params: object,
        _context: ExecutionContext | None,
        _many: bool,
    ) -> None:
        deadline = time.monotonic() + seconds
        sqlite_connection = cast(sqlite3.Connection, conn.connection.dbapi_connection)
        sqlite_connection.set_progress_handler(
            lambda: time.monotonic() > deadline, SQLITE_DEADLINE_STEPS
        )

    @event.listens_for(engine, "checkin")
    def _disarm(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.set_progress_handler(None, 0)


def _postgres_statement_timeout(engine: Engine, seconds: float) -> None:
    @event.listens_for(engine, "connect")
    def _set(dbapi_connection: psycopg.Connection[Any], _record: ConnectionPoolEntry) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {round(seconds * 1000)}")
        dbapi_connection.commit()


def make_engine(url: str, *, statement_timeout: float | None = None, **kw: Any) -> Engine:
    """An engine for `url`; with `statement_timeout` (seconds) no statement runs longer and
    no SQLite lock is waited for longer (readers that must not hold on: the HTTP API)."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kw)
        busy_ms = SQLITE_BUSY_TIMEOUT_MS
        if statement_timeout:
            busy_ms = min(busy_ms, round(statement_timeout * 1000))
        event.listen(engine, "connect", functools.partial(_sqlite_pragmas, busy_timeout_ms=busy_ms))
        if statement_timeout:
            _sqlite_statement_deadline(engine, statement_timeout)
    else:
        engine = create_engine(url, pool_pre_ping=True, **kw)
        if statement_timeout:
            _postgres_statement_timeout(engine, statement_timeout)
    event.listen(engine, "handle_error", _reopen_after_readonly)
    return engine


def bounded_engine(engine: Engine, connections: int, statement_timeout: float) -> Engine:
    """A second engine on `engine`'s database with a pool of its own (`connections`, plus two
    for health probes) and a statement timeout: readers that cannot take the connections
    `engine`'s users (ingestion) need, nor keep one for long."""
    return make_engine(
        engine.url.render_as_string(hide_password=False),
        statement_timeout=statement_timeout,
        pool_size=connections,
        max_overflow=2,
        pool_timeout=statement_timeout,
    )


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


# A write the schema allows at any time and that changes nothing: a row rewritten as it is.
_WRITE_PROBE = text("UPDATE alembic_version SET version_num = version_num")
PROBE_LOCK_WAIT_MS = 1000


def probe_writes(engine: Engine) -> bool:
    """Write and commit one row, unchanged: raises when the store cannot take writes (a
    read-only file or session, a full disk); False when another writer held the lock for
    longer than PROBE_LOCK_WAIT_MS (busy is not broken), True when the write went through."""
    sqlite = is_sqlite(engine)
    with engine.connect() as conn:
        if sqlite:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={PROBE_LOCK_WAIT_MS}")
            conn.commit()  # ends the transaction the PRAGMA began; nothing written
        try:
            with conn.begin():
                if not sqlite:
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {PROBE_LOCK_WAIT_MS}")
                conn.execute(_WRITE_PROBE)
        except OperationalError as exc:
            code = getattr(exc.orig, "sqlite_errorcode", 0) or 0
            if code & 0xFF == SQLITE_BUSY or getattr(exc.orig, "sqlstate", None) == (
                PG_LOCK_NOT_AVAILABLE
            ):
                return False
            raise
        finally:
            if sqlite and not conn.invalidated:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                conn.commit()
    return True


def defer_insert(session: Session, table: Table, rows: list[dict[str, object]]) -> None:
    """Insert `rows` into `table` when the session commits, together with every other row
    deferred for that table: one executemany instead of one statement per caller."""
    pending: dict[Table, list[dict[str, object]]] = session.info.setdefault("deferred", {})
    pending.setdefault(table, []).extend(rows)


# The parameter naming the row of a deferred update (not a column name of any table).
_ROW_ID = "deferred_row_id"


def defer_update(session: Session, table: Table, row_id: int, values: dict[str, object]) -> None:
    """Set `values` on the row `row_id` of `table` when the session commits: the updates of
    every caller that set the same columns go in one executemany UPDATE."""
    pending: dict[tuple[Table, tuple[str, ...]], list[dict[str, object]]] = session.info.setdefault(
        "deferred_updates", {}
    )
    pending.setdefault((table, tuple(sorted(values))), []).append({**values, _ROW_ID: row_id})


def _flush_deferred(session: Session) -> None:
    """The deferred rows, one executemany a table and set of columns (store/executemany:
    the statement compiled once, no per-row bookkeeping)."""
    for table, rows in session.info.pop("deferred", {}).items():
        executemany_rows(session, _insert_into(table), rows)
    for (table, columns), rows in session.info.pop("deferred_updates", {}).items():
        keys = (*columns, _ROW_ID)
        values = [tuple(row[key] for key in keys) for row in rows]
        executemany(session, _update_by_id(table), keys, values)


# One statement object a table: store/executemany caches compiled statements by the object,
# so a statement built anew at every commit would be compiled anew (and fill its cache).
@functools.cache
def _insert_into(table: Table) -> Insert:
    return insert(table)


@functools.cache
def _update_by_id(table: Table) -> Update:
    return update(table).where(table.c.id == bindparam(_ROW_ID))


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            _flush_deferred(session)
            session.commit()
        except BaseException:
            session.rollback()
            raise


# Alembic (and the Mako templates it loads) is imported only when the schema is behind:
# a start on a current store reads the stored revision with one query and the head from the
# migration files' headers (docs/decisions/0185-lazy-start-up.md).
def _alembic_config(engine: Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision` (idempotent)."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return script.get_current_head()


_REVISION_LINE = re.compile(r'^(down_revision|revision)\s*=\s*["\']([^"\']+)["\']', re.MULTILINE)


def migration_heads(directory: Path = MIGRATIONS_DIR / "versions") -> set[str]:
    """The revisions no migration revises, read from the `revision = "..."` and
    `down_revision = "..."` lines of the migration files: what alembic calls the heads,
    without importing alembic."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in directory.glob("*.py"):
        for name, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8")):
            (revisions if name == "revision" else revised).add(value)
    return revisions - revised


def stored_revision(connection: Connection) -> str | None:
    """The revision recorded in the store's `alembic_version` table (None when there is none)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def schema_head() -> str | None:
    """The one head of the migration files (None if they have several), without alembic."""
    heads = migration_heads()
    return next(iter(heads)) if len(heads) == 1 else None


def stored_schema(engine: Engine) -> str | None:
    """The store's revision, read without alembic (readiness asks at every probe)."""
    with engine.connect() as connection:
        return stored_revision(connection)


def _schema_current(engine: Engine) -> bool:
    """Whether the store is at the one head of the migration files (nothing to migrate)."""
    heads = migration_heads()
    with engine.connect() as connection:
        return len(heads) == 1 and stored_revision(connection) in heads


# The store cannot be opened (newswatch.errors): its text is one line, the URL (password
# hidden) and the cause. Imported here too, where callers have always found it.
StoreUnavailable = errors.StoreUnavailable


def display_url(url: str) -> str:
    """`url` with its password hidden: everything between the user's colon and the last
    "@" (a password may hold ":" and "@"; so may a URL no parser accepts)."""
    return re.sub(r"(://[^:/@]*:).*@", r"\1***@", url)


def _url_problem(exc: BaseException) -> str:
    if isinstance(exc, NoSuchModuleError):
        return "unknown kind of database (newswatch uses sqlite:/// or postgresql://)"
    if isinstance(exc, ArgumentError | ValueError):
        return "not a database URL (sqlite:///PATH or postgresql://USER@HOST/DATABASE)"
    return _cause(exc)  # an SQLite directory that cannot be made


def _cause(exc: BaseException) -> str:
    """What went wrong, on one line: the driver's message without SQLAlchemy's additions."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    lines = [" ".join(line.split()) for line in str(exc).splitlines()]
    return "; ".join(line for line in lines if line) or type(exc).__name__


def open_store(url: str, migrate: bool = True) -> Engine:
    """Engine for `url`, with the schema brought up to date unless `migrate` is False; the
    store is reached once either way, so that a wrong URL fails here, in one line
    (StoreUnavailable), rather than with a traceback at the first query."""
    where = f"cannot open the store {display_url(url)}"
    try:
        engine = make_engine(url)
    except Exception as exc:
        raise StoreUnavailable(_url_problem(exc), where=where) from exc
    try:
        if not migrate:
            with engine.connect():
                pass
        elif not _schema_current(engine):  # reaches the store, as the else branch does
            with startup_lock(engine):  # two processes starting at once migrate in turn
                upgrade(engine)
    except Exception as exc:
        engine.dispose()
        raise StoreUnavailable(_cause(exc), where=where) from exc
    return engine
