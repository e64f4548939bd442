"""Faults of the store (issue 20, item 4): a store made read-only and then writable again is
written again without a restart, and readiness fails while the store cannot take writes (read
only, disk full). Real files, a real (tiny) file system, real Postgres."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from newswatch.api.health import Readiness
from newswatch.store.articles import ensure_source
from newswatch.store.db import make_engine, session_scope, upgrade

NOBODY = 65534


@pytest.fixture
def store_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's own is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="newswatch-ro-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


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
