"""Events for exports, read a chunk at a time through the events list (store/event_views.py)
so that an export of any size keeps memory flat and selects what the list selects."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from newswatch.store import search
from newswatch.store.columns import utcnow
from newswatch.store.event_views import After, EventFilter, list_events

__all__ = ["EventFilter", "EventRow", "iter_events"]


@dataclass(frozen=True)
class EventRow:
    id: int
    title: str | None
    first_seen: datetime
    last_seen: datetime
    article_count: int
    source_count: int
    top_entities: list[str]


def iter_events(session: Session, filters: EventFilter) -> Iterator[EventRow]:
    """Every event matching `filters` (the events list's filters and query), most recent
    activity first, EXPORT_CHUNK at a time (the list's keyset paging on last_seen, id)."""
    after: After | None = None
    chunk = search.EXPORT_CHUNK
    while True:
        rows = list_events(
            session, filters, sort="latest", limit=chunk, as_of=utcnow(), after=after
        )
        yield from (
            EventRow(
                r.id,
                r.title,
                r.first_seen,
                r.last_seen,
                r.article_count,
                r.source_count,
                r.top_entities,
            )
            for r in rows
        )
        if len(rows) < chunk:
            return
        after = After(rows[-1].last_seen, rows[-1].id)
