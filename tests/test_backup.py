"""`newswatch db backup`: a consistent copy of a live SQLite store; Postgres is refused."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import Session

from newswatch.store.db import current_revision, head_revision, make_engine, open_store
from newswatch.store.models import Source
from tests.cli_support import newswatch
from tests.conftest import PG_URL, skip_or_fail


def env_for(url: str) -> dict[str, str]:
    env = dict(os.environ, DATABASE_URL=url)
    env.pop("NEWSWATCH_CONFIG", None)
    return env


def test_backup_while_a_writer_holds_a_transaction_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    engine = open_store(url)
    with Session(engine) as session:
        session.add_all(
            [
                Source(name=f"s{i}", url=f"http://s{i}.example/", configured_url="x")
                for i in range(300)
            ]
        )
        session.commit()
    # Another process-like writer is in the middle of a transaction during the backup.
    writer = sqlite3.connect(tmp_path / "live.db", timeout=1)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(
        "INSERT INTO sources (name, url, configured_url, kind, origin, enabled, options,"
        " consecutive_errors, created_at) VALUES ('uncommitted', 'u', 'u', 'auto', 'cli', 1,"
        " '{}', 0, '2026-12-02 00:00:00')"
    )
    target = tmp_path / "backups" / "copy.db"
    done = newswatch("db", "backup", str(target), env=env_for(url))
    writer.rollback()
    writer.close()
    assert done.returncode == 0, done.stderr
    assert "backed up" in done.stdout
    copy = make_engine(f"sqlite:///{target}")
    with Session(copy) as session:
        names = set(session.execute(select(Source.name)).scalars())
    # Everything committed is in the copy, nothing of the open transaction; the copy is a
    # store at the current schema that newswatch opens as it is.
    assert len(names) == 300 and "uncommitted" not in names
    assert current_revision(copy) == head_revision()
    assert sqlite3.connect(target).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # An existing file is never overwritten.
    again = newswatch("db", "backup", str(target), env=env_for(url))
    assert again.returncode == 1 and "exists" in again.stderr
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(Source)).scalar_one() == 300


def test_backup_of_postgres_points_to_pg_dump(tmp_path: Path) -> None:
    if not PG_URL:
        skip_or_fail("NEWSWATCH_TEST_DATABASE_URL not set (CI must set it)")
    refused = newswatch("db", "backup", str(tmp_path / "x.db"), env=env_for(PG_URL))
    assert refused.returncode == 1 and "pg_dump" in refused.stderr
    assert not (tmp_path / "x.db").exists()
