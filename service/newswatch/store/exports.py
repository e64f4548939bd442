"""Events for lists and exports, with the filters of the articles list (store/search.py):
read a chunk at a time so that an export of any size keeps memory flat."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, or_, select, true
from sqlalchemy.orm import Session

from newswatch.store.models import Article, Event, Sighting, table_of
from newswatch.store.search import EXPORT_CHUNK, SearchQuery, matching_event_ids

EVENTS = table_of(Event)
ARTICLES = table_of(Article)
SIGHTINGS = table_of(Sighting)


@dataclass(frozen=True)
class EventFilter:
    """Open (not merged-away) events: active since `since` (last_seen), with an article the
    query `q` matches, with at least `min_sources` sources, with an article carried by
    source `source_id`, with an article in `language`."""

    q: SearchQuery | None = None
    since: datetime | None = None
    min_sources: int | None = None
    source_id: int | None = None
    language: str | None = None


@dataclass(frozen=True)
class EventRow:
    id: int
    title: str | None
    first_seen: datetime
    last_seen: datetime
    article_count: int
    source_count: int
    top_entities: list[str]


def _conditions(session: Session, filters: EventFilter) -> list[ColumnElement[bool]]:
    e, a = EVENTS.c, ARTICLES.c
    parts: list[ColumnElement[bool]] = [e.merged_into.is_(None)]
    if filters.since is not None:
        parts.append(e.last_seen >= filters.since)
    if filters.min_sources:
        parts.append(e.source_count >= filters.min_sources)
    if filters.q is not None:
        parts.append(e.id.in_(matching_event_ids(session, filters.q)))
    if filters.source_id is not None:
        carried = select(SIGHTINGS.c.article_id).where(SIGHTINGS.c.source_id == filters.source_id)
        parts.append(exists().where(a.event_id == e.id, a.id.in_(carried)))
    if filters.language is not None:
        parts.append(exists().where(a.event_id == e.id, a.language == filters.language))
    return parts


def _events_query(
    session: Session, filters: EventFilter, after: tuple[datetime, int] | None
) -> Select[Any]:
    e = EVENTS.c
    columns = (
        e.id,
        e.title,
        e.first_seen,
        e.last_seen,
        e.article_count,
        e.source_count,
        e.top_entities,
    )
    query = select(*columns).where(and_(true(), *_conditions(session, filters)))
    if after is not None:
        at, ident = after
        query = query.where(or_(e.last_seen < at, and_(e.last_seen == at, e.id < ident)))
    return query.order_by(e.last_seen.desc(), e.id.desc())


def iter_events(session: Session, filters: EventFilter) -> Iterator[EventRow]:
    """Every event matching `filters`, most recent activity first, EXPORT_CHUNK at a time
    (keyset paging on last_seen, id)."""
    after: tuple[datetime, int] | None = None
    while True:
        query = _events_query(session, filters, after).limit(EXPORT_CHUNK)
        rows = [EventRow(**r._mapping) for r in session.execute(query)]
        yield from rows
        if len(rows) < EXPORT_CHUNK:
            return
        after = (rows[-1].last_seen, rows[-1].id)
