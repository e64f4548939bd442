"""INSERT ... ON CONFLICT DO NOTHING, written once for both stores.

SQLAlchemy's generic `insert` has no ON CONFLICT clause; SQLite's and Postgres's dialect
inserts have the same one. Every module that inserts rows which may exist already (a match,
a sighting, a notification replayed) builds its statement here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert
from sqlmodel import Session


def insert_ignoring_conflicts(
    session: Session, table: Table, conflict: Sequence[Column[Any]] | None = None
) -> Insert:
    """An INSERT into `table` that skips rows clashing on the unique columns `conflict`
    (any unique constraint when None), for the session's database."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=conflict)
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=conflict)
