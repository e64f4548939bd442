"""Event queries for the API, the pages and the CLI.

The events table belongs to the grouping stage; these queries name only the columns its
interface promises (id, title, first_seen, last_seen, article_count, source_count,
top_entities, merged_into), so the API does not depend on the grouping code itself.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from datetime import datetime

from sqlalchemy import (
    JSON,
    Engine,
    Integer,
    Text,
    and_,
    column,
    exists,
    inspect,
    or_,
    select,
    table,
)
from sqlmodel import Session, col

from newswatch.api.params import Cursor, like_pattern
from newswatch.api.schemas import EventArticle, EventDetail, EventOut, EventPage
from newswatch.store.columns import UTCDateTime
from newswatch.store.models import Article, Sighting, Source, table_of

EVENTS = table(
    "events",
    column("id", Integer),
    column("title", Text),
    column("first_seen", UTCDateTime),
    column("last_seen", UTCDateTime),
    column("article_count", Integer),
    column("source_count", Integer),
    column("top_entities", JSON),
    column("merged_into", Integer),
    column("split_from", Integer),
)
E = EVENTS.c
A = table_of(Article).c
MAX_MERGE_HOPS = 50


_HAS_EVENTS: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


def events_available(session: Session) -> bool:
    """Whether the store has the grouping stage's events table (remembered once seen)."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    if not _HAS_EVENTS.get(engine):
        _HAS_EVENTS[engine] = inspect(session.connection()).has_table("events")
    return _HAS_EVENTS[engine]


def _event_out(row: object) -> EventOut:
    return EventOut.model_validate(row, from_attributes=True)


def list_events(
    session: Session,
    *,
    limit: int,
    cursor: Cursor | None = None,
    since: datetime | None = None,
    q: str | None = None,
    min_sources: int | None = None,
) -> EventPage:
    """Open (not merged-away) events, most recent activity first."""
    if not events_available(session):
        return EventPage(items=[], limit=limit, next_cursor=None)
    query = select(EVENTS).where(E.merged_into.is_(None))
    if since is not None:
        query = query.where(E.last_seen >= since)
    if min_sources:
        query = query.where(E.source_count >= min_sources)
    if q:
        pattern = like_pattern(q)
        in_articles = exists().where(A.event_id == E.id, A.title.ilike(pattern, escape="\\"))
        query = query.where(or_(E.title.ilike(pattern, escape="\\"), in_articles))
    if cursor is not None:
        query = query.where(
            or_(E.last_seen < cursor.at, and_(E.last_seen == cursor.at, E.id < cursor.id))
        )
    query = query.order_by(E.last_seen.desc(), E.id.desc()).limit(limit + 1)
    rows = session.execute(query).all()
    items = [_event_out(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = Cursor(items[-1].last_seen, items[-1].id).encode()
    return EventPage(items=items, limit=limit, next_cursor=next_cursor)


def resolve_event_id(session: Session, event_id: int) -> int | None:
    """The event `event_id` now lives in: itself, or the event it was merged into."""
    if not events_available(session):
        return None
    seen: set[int] = set()
    current = event_id
    while current not in seen and len(seen) < MAX_MERGE_HOPS:
        seen.add(current)
        row = session.execute(select(E.merged_into).where(E.id == current)).first()
        if row is None:
            return None
        if row.merged_into is None:
            return current
        current = row.merged_into
    return current


def sources_by_article(session: Session, article_ids: list[int]) -> dict[int, list[str]]:
    """Names of every source that carried each article (its sightings)."""
    if not article_ids:
        return {}
    rows = session.execute(
        select(col(Sighting.article_id), col(Source.name))
        .join(Source, col(Sighting.source_id) == Source.id)
        .where(col(Sighting.article_id).in_(article_ids))
        .order_by(col(Sighting.first_seen))
    ).all()
    out: dict[int, list[str]] = defaultdict(list)
    for article_id, name in rows:
        out[article_id].append(name)
    return out


def explanations(session: Session, article_ids: list[int]) -> dict[int, object]:
    """Why the grouping stage put each article in its event (its stored explanation)."""
    if not article_ids:
        return {}
    query = select(A.id, A.group_explain).where(A.id.in_(article_ids))
    return {row.id: row.group_explain for row in session.execute(query)}


def event_articles(
    session: Session, event_ids: list[int], *, since: datetime | None = None
) -> dict[int, list[tuple[Article, str | None]]]:
    """Articles of each event (oldest first) with the name of the source that first had it."""
    if not event_ids:
        return {}
    query = (
        select(Article, col(Source.name))
        .join(Source, col(Article.source_id) == Source.id, isouter=True)
        .where(col(Article.event_id).in_(event_ids))
        .order_by(col(Article.first_seen), col(Article.id))
    )
    if since is not None:
        query = query.where(col(Article.first_seen) >= since)
    out: dict[int, list[tuple[Article, str | None]]] = defaultdict(list)
    for article, name in session.execute(query).all():
        out[article.event_id].append((article, name))
    return out


def get_event(session: Session, event_id: int) -> EventDetail | None:
    """One event with its articles, their sources and why each joined; a merged-away id
    resolves to the event that absorbed it."""
    final = resolve_event_id(session, event_id)
    if final is None:
        return None
    row = session.execute(select(EVENTS).where(E.id == final)).one()
    merged_from = session.execute(select(E.id).where(E.merged_into == final).order_by(E.id))
    split_off = session.execute(select(E.id).where(E.split_from == final).order_by(E.id))
    pairs = event_articles(session, [final]).get(final, [])
    ids = [a.id for a, _ in pairs if a.id is not None]
    carriers = sources_by_article(session, ids)
    why = explanations(session, ids)
    articles = [
        EventArticle(
            **a.model_dump(),
            source_name=name,
            sources=carriers.get(a.id, []),  # type: ignore[arg-type]
            explanation=why.get(a.id),  # type: ignore[arg-type]
        )
        for a, name in pairs
    ]
    all_sources = sorted({s for names in carriers.values() for s in names})
    return EventDetail(
        **_event_out(row).model_dump(),
        merged_from=list(merged_from.scalars()),
        split_from=row.split_from,
        split_off=list(split_off.scalars()),
        sources=all_sources,
        articles=articles,
    )
