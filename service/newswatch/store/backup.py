"""A consistent copy of an SQLite store while the service keeps writing to it.

SQLite's online backup API copies the database page by page inside read transactions; with
WAL, the service's writes go on meanwhile, and the copy is the database as of one moment
(the backup restarts by itself if a write lands in the middle of a step).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine

PAGES_PER_STEP = 1024  # 4 MiB at SQLite's default page size; writers wait at most one step


def backup_sqlite(engine: Engine, target: Path) -> int:
    """Copy the store behind `engine` to a new file `target`; the number of pages copied."""
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = engine.raw_connection()
    try:
        source = raw.driver_connection
        assert isinstance(source, sqlite3.Connection), "backup_sqlite needs an SQLite engine"
        copy = sqlite3.connect(target)
        try:
            source.backup(copy, pages=PAGES_PER_STEP, sleep=0.005)
            return int(copy.execute("PRAGMA page_count").fetchone()[0])
        finally:
            copy.close()
    finally:
        raw.close()
