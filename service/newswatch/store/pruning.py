"""The statements of retention (newswatch/retention.py): find and delete a table's old rows.

Each condition is written so that it runs on an index; deletes go in chunks of ids, each in
the caller's (short) transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, CursorResult, Table, delete, func, select
from sqlmodel import Session

from newswatch.store.models import Fetch, Source, table_of
from newswatch.store.outbox import NOTIFICATIONS
from newswatch.store.page_urls import PAGE_URLS

# The tables retention prunes.
PrunedTable = Literal["fetches", "page_urls", "notifications"]

FETCHES = table_of(Fetch)
SOURCES = table_of(Source)
TABLES: dict[PrunedTable, Table] = {
    "fetches": FETCHES,
    "page_urls": PAGE_URLS,
    "notifications": NOTIFICATIONS,
}


def source_ids(session: Session) -> list[int]:
    """Every source's id (the fetch log is pruned one source at a time, on its index)."""
    return list(session.execute(select(SOURCES.c.id)).scalars())


def _old_rows(table: PrunedTable, cutoff: datetime, source_id: int | None) -> ColumnElement[bool]:
    """A condition selecting the table's rows older than `cutoff`, through an index."""
    if table == "fetches":  # ix_fetches_source_started, one source at a time
        return (FETCHES.c.source_id == source_id) & (FETCHES.c.started_at < cutoff)
    if table == "page_urls":  # ix_page_urls_first_seen
        return PAGE_URLS.c.first_seen < cutoff
    n = NOTIFICATIONS.c  # ix_notifications_due (status, not_before); pending ones stay
    return n.status.in_(("sent", "dead")) & (n.not_before < cutoff)


def count_old_rows(
    session: Session, table: PrunedTable, cutoff: datetime, source_id: int | None = None
) -> int:
    """How many rows `delete_old_rows` would delete (a dry run)."""
    condition = _old_rows(table, cutoff, source_id)
    query = select(func.count()).select_from(TABLES[table]).where(condition)
    return int(session.execute(query).scalar_one())


def delete_old_rows(
    session: Session,
    table: PrunedTable,
    cutoff: datetime,
    limit: int,
    source_id: int | None = None,
) -> int:
    """Delete at most `limit` of the table's rows older than `cutoff`; how many went."""
    t = TABLES[table]
    ids = select(t.c.id).where(_old_rows(table, cutoff, source_id)).limit(limit)
    result = cast(
        "CursorResult[Any]", session.execute(delete(t).where(t.c.id.in_(ids.scalar_subquery())))
    )
    return result.rowcount or 0
