"""Faults of the store (issue 20, item 4): a store made read-only and then writable again is
written again without a restart, and readiness fails while the store cannot take writes (read
only, disk full). Real files, a real (tiny) file system, real Postgres."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from newswatch.api import create_app
from newswatch.api.health import Readiness
from newswatch.config import Settings
from newswatch.store.articles import ensure_source
from newswatch.store.db import make_engine, session_scope, upgrade
from tests.api_support import running
from tests.conftest import empty_database

NOBODY = 65534


@pytest.fixture
def store_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's own is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="newswatch-ro-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    """An empty Postgres database (a schema of its own); skipped without one."""
    with empty_database("postgres", tmp_path) as url:
        yield url


@contextmanager
def read_only(db: Path) -> Iterator[None]:
    """The SQLite file not writable for this process: mode 0444. Root ignores modes, so
    under root the process's effective user becomes nobody instead, to whom the root-owned
    file (mode 0644) is read-only just the same."""
    if os.geteuid() == 0:
        os.seteuid(NOBODY)
        try:
            yield
        finally:
            os.seteuid(0)
        return
    mode = db.stat().st_mode
    db.chmod(0o444)
    try:
        yield
    finally:
        db.chmod(mode)


def _sqlite(directory: Path) -> tuple[Engine, Path]:
    db = directory / "newswatch.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    engine.dispose()
    return engine, db


def _write(engine: Engine, name: str) -> None:
    with session_scope(engine) as session:
        ensure_source(session, name)


def test_writes_resume_when_a_read_only_file_is_writable_again(store_dir):
    engine, db = _sqlite(store_dir)
    # A reader holds a connection throughout (the API, a CLI): the write below opens
    # another one, while the file is read-only.
    with engine.connect():
        with read_only(db), pytest.raises(OperationalError, match="readonly"):
            _write(engine, "during")
        # Writable again: the next write works, no restart (before: "attempt to write a
        # readonly database" until the process restarted).
        _write(engine, "after")
        _write(engine, "and after")
    engine.dispose()


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def _readiness(engine: Engine) -> tuple[Readiness, FakeClock]:
    clock = FakeClock()
    return Readiness(engine, clock=clock), clock


@contextmanager
def _postgres_role(engine: Engine) -> Iterator[tuple[str, str]]:
    """A login role of its own with every right on the test's schema; its name, password."""
    role = "nw_" + uuid.uuid4().hex[:12]
    with engine.begin() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{role}'"))
        conn.execute(text(f'GRANT ALL ON SCHEMA "{schema}" TO {role}'))
        conn.execute(text(f'GRANT ALL ON ALL TABLES IN SCHEMA "{schema}" TO {role}'))
        conn.execute(text(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA "{schema}" TO {role}'))
    try:
        yield role, role
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM {role}'))
            conn.execute(text(f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA "{schema}" FROM {role}'))
            conn.execute(text(f'REVOKE ALL ON SCHEMA "{schema}" FROM {role}'))
            conn.execute(text(f"DROP ROLE {role}"))


def test_writes_resume_when_postgres_sessions_are_writable_again(postgres_url):
    """Sessions begun read-only (a standby after a failover; here the role's
    default_transaction_read_only) stay so: after the primary is back, pooled connections
    refused every write until a restart."""
    admin = make_engine(postgres_url)
    upgrade(admin)
    with _postgres_role(admin) as (role, password):
        url = postgres_url.replace("postgres@", f"{role}:{password}@", 1)
        engine = make_engine(url)
        with admin.begin() as conn:
            conn.execute(text(f"ALTER ROLE {role} SET default_transaction_read_only = on"))
        with pytest.raises(DBAPIError, match="read-only transaction"):
            _write(engine, "during")
        with admin.begin() as conn:
            conn.execute(text(f"ALTER ROLE {role} RESET default_transaction_read_only"))
        _write(engine, "after")
        _write(engine, "and after")
        engine.dispose()
    admin.dispose()


def test_readiness_fails_while_a_sqlite_store_is_read_only(store_dir):
    engine, db = _sqlite(store_dir)
    app = create_app(engine, Settings(_env_file=None))  # type: ignore[call-arg]
    with running(app) as api:
        assert api.get("/readyz").status_code == 200  # (and every lazy import done)
        app.state.readiness.write_probe_every = 0  # probe at every request
        # A connection from before the fault stays busy (a reader): readiness opens its
        # own while the file is read-only.
        with engine.connect(), read_only(db):
            response = api.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["failed"] == ["store_writes"]
        assert "readonly" in body["checks"]["store_writes"]["error"]
        assert body["checks"]["store"]["ok"]  # reads work: SELECT 1 alone said "ready"
        assert api.get("/readyz").status_code == 200  # writable again, no restart
    engine.dispose()


def test_the_write_probe_is_rate_limited_and_sees_recovery(store_dir):
    engine, db = _sqlite(store_dir)
    readiness, clock = _readiness(engine)
    assert readiness.check()[0]
    with engine.connect(), read_only(db):  # (a busy connection from before, as above)
        clock.now += readiness.write_probe_every - 1
        assert readiness.check()[0]  # within the interval: the last probe's result
        clock.now += 1
        ready, body = readiness.check()
        assert not ready and body["failed"] == ["store_writes"]
    clock.now += 1
    assert not readiness.check()[0]  # still the failed probe's result
    clock.now += readiness.write_probe_every
    assert readiness.check()[0]  # writable again: ready again, no restart
    engine.dispose()


def test_readiness_fails_while_a_postgres_session_is_read_only(postgres_url):
    """A session that cannot write (a standby, default_transaction_read_only) is not ready."""
    engine = make_engine(postgres_url)
    upgrade(engine)
    engine.dispose()
    read_only_url = postgres_url + "%20-cdefault_transaction_read_only%3Don"
    standby = make_engine(read_only_url)
    try:
        ready, body = _readiness(standby)[0].check()
        assert not ready and body["failed"] == ["store_writes"]
        assert "read-only transaction" in body["checks"]["store_writes"]["error"]
        assert _readiness(engine)[0].check()[0]
    finally:
        standby.dispose()
        engine.dispose()


@contextmanager
def tiny_file_system(directory: Path, size: str = "4m") -> Iterator[Path]:
    """A real file system of `size` (tmpfs) mounted on `directory`; skips where mounting is
    not allowed (it needs CAP_SYS_ADMIN)."""
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mount.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def test_readiness_fails_while_the_disk_is_full(store_dir):
    with tiny_file_system(store_dir) as disk:
        engine, _db = _sqlite(disk)
        readiness, clock = _readiness(engine)
        assert readiness.check()[0]
        filler = disk / "filler"
        # Unbuffered: a buffered file keeps the part of its last write the disk refused and
        # fails again when closed (depending on how full the store left the disk).
        with filler.open("wb", buffering=0) as out:
            try:
                while True:
                    out.write(bytes(64 * 1024))
            except OSError:
                pass  # full
        clock.now += readiness.write_probe_every
        ready, body = readiness.check()
        assert not ready and body["failed"] == ["store_writes"]
        assert "full" in body["checks"]["store_writes"]["error"]
        filler.unlink()
        clock.now += readiness.write_probe_every
        assert readiness.check()[0]
        engine.dispose()
