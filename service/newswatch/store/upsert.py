"""INSERT ... ON CONFLICT DO NOTHING, written once for both stores.

SQLAlchemy's generic `insert` has no ON CONFLICT clause; SQLite's and Postgres's dialect
inserts have the same one. Every module that inserts rows which may exist already (a match,
a sighting, a notification replayed) builds its statement here.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Column, Table
from sqlalchemy.sql.dml import Insert
from sqlmodel import Session


def insert_ignoring_conflicts(
    session: Session, table: Table, conflict: Sequence[Column[Any]] | None = None
) -> Insert:
    """An INSERT into `table` that skips rows clashing on the unique columns `conflict`
    (any unique constraint when None), for the session's database. The same object for the
    same arguments: store/executemany caches compiled statements by the statement."""
    columns = None if conflict is None else tuple(conflict)
    return _ignoring_conflicts(session.get_bind().dialect.name, table, columns)


@cache
def _ignoring_conflicts(
    dialect: str, table: Table, conflict: tuple[Column[Any], ...] | None
) -> Insert:
    # The dialect's module is imported for its store only (Postgres's alone weighs as much
    # as the rest of the store layer).
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).on_conflict_do_nothing(index_elements=conflict)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table).on_conflict_do_nothing(index_elements=conflict)
