"""The store's reads of events for the API, the pages and the CLI.

The events table belongs to the grouping stage; these queries name only the columns its
interface promises (id, title, first_seen, last_seen, article_count, source_count,
top_entities, merged_into, split_from, created_at, updated_at), so readers do not depend on
the grouping code itself.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    Engine,
    Integer,
    Row,
    Text,
    and_,
    column,
    exists,
    func,
    inspect,
    literal,
    or_,
    select,
    table,
)
from sqlmodel import Session, col

from newswatch.store.alerts import event_matched, matched_rule_names
from newswatch.store.columns import UTCDateTime
from newswatch.store.event_sources import EventSource
from newswatch.store.event_triage import EventTriage
from newswatch.store.models import Article, Sighting, Source, table_of
from newswatch.store.search import SearchQuery, matching_event_ids

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
    column("created_at", UTCDateTime),
    column("updated_at", UTCDateTime),
)
E = EVENTS.c
A = table_of(Article).c
S = table_of(Sighting).c
T = table_of(EventTriage).c
F = table_of(EventSource).c
MAX_MERGE_HOPS = 50
# "Growth" counts the distinct sources an event gained in this span before the page's time.
GROWTH_SPAN = timedelta(hours=1)

Sort = Literal["latest", "size", "growth"]
SORTS: tuple[Sort, ...] = ("latest", "size", "growth")


@dataclass(frozen=True)
class EventFilter:
    """Which events a list shows; None (or False) means no filter."""

    since: datetime | None = None
    q: str | SearchQuery | None = None  # the alert rules' query language, parsed or not
    min_sources: int | None = None
    language: str | None = None
    source_id: int | None = None
    rule: str | None = None
    hide_acknowledged: bool = False
    starred: bool = False


@dataclass(frozen=True)
class After:
    """Where the previous page ended: its last row's sort key and id."""

    key: datetime | int
    id: int


_HAS_EVENTS: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


def events_available(session: Session) -> bool:
    """Whether the store has the grouping stage's events table (remembered once seen)."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    if not _HAS_EVENTS.get(engine):
        _HAS_EVENTS[engine] = inspect(session.connection()).has_table("events")
    return _HAS_EVENTS[engine]


def _growth(as_of: datetime, event_ids: list[int] | None = None) -> Any:
    """Per event: distinct sources whose first sighting in the event falls in the growth span
    before `as_of` (later sightings are not counted, so pages of one list agree). Read from
    event_sources (each source's first sighting of each event, kept by the database,
    decision 0207): the span's rows by their index, or those of `event_ids`."""
    cutoff = as_of - GROWTH_SPAN
    query = select(F.event_id, func.count().label("growth")).where(
        F.first_seen > cutoff, F.first_seen <= as_of
    )
    if event_ids is not None:
        query = query.where(F.event_id.in_(event_ids))
    return query.group_by(F.event_id)


def growth_of(session: Session, event_ids: list[int], as_of: datetime) -> dict[int, int]:
    """Distinct sources each event gained in the growth span before `as_of` (0: none)."""
    if not event_ids:
        return {}
    rows = session.execute(_growth(as_of, event_ids))
    found = {int(r.event_id): int(r.growth) for r in rows}
    return {e: found.get(e, 0) for e in event_ids}


def _filters(session: Session, query: Any, filters: EventFilter) -> Any:
    if filters.since is not None:
        query = query.where(E.last_seen >= filters.since)
    if filters.min_sources:
        query = query.where(E.source_count >= filters.min_sources)
    if filters.q:  # the full-text index, in the alert rules' query language
        query = query.where(E.id.in_(matching_event_ids(session, filters.q)))
    if filters.language:
        query = query.where(
            exists().where(A.event_id == E.id, func.lower(A.language) == filters.language.lower())
        )
    if filters.source_id is not None:
        carried = (
            select(S.id)
            .select_from(table_of(Sighting).join(table_of(Article), S.article_id == A.id))
            .where(A.event_id == E.id, S.source_id == filters.source_id)
        )
        query = query.where(carried.exists())
    if filters.rule:
        query = query.where(event_matched(E.id, filters.rule))
    if filters.hide_acknowledged:
        query = query.where(T.acknowledged_at.is_(None))
    if filters.starred:
        query = query.where(T.starred_at.is_not(None))
    return query


_TRIAGE_COLUMNS = (
    T.acknowledged_at,
    T.acknowledged_by,
    T.starred_at,
    T.starred_by,
    T.muted_at,
    T.muted_by,
)


def list_events(
    session: Session,
    filters: EventFilter,
    *,
    sort: Sort,
    limit: int,
    as_of: datetime,
    after: After | None = None,
) -> Sequence[Row[Any]]:
    """Open (not merged-away) events in `sort` order, at most `limit`; each row has the
    event's columns, `sort_key`, the triage columns (null when untriaged) and, sorted by
    growth, `growth` (else see `growth_of`)."""
    if sort == "growth":
        return _list_by_growth(session, filters, limit=limit, as_of=as_of, after=after)
    key = E.last_seen if sort == "latest" else E.source_count
    query = (
        select(EVENTS, key.label("sort_key"), *_TRIAGE_COLUMNS)
        .select_from(EVENTS.outerjoin(table_of(EventTriage), T.event_id == E.id))
        .where(E.merged_into.is_(None))
    )
    query = _filters(session, query, filters)
    if after is not None:
        query = query.where(or_(key < after.key, and_(key == after.key, E.id < after.id)))
    query = query.order_by(key.desc(), E.id.desc()).limit(limit)
    return session.execute(query).all()


def _list_by_growth(
    session: Session, filters: EventFilter, *, limit: int, as_of: datetime, after: After | None
) -> list[Row[Any]]:
    """The growth sort in two parts: the events that grew in the span (few: those with a
    sighting in it), by growth; then every other open event, growth 0, newest id first,
    read from the id index. Neither part reads or sorts every open event (decision 0203)."""
    growth = _growth(as_of).subquery()
    triage = table_of(EventTriage)
    rows: list[Row[Any]] = []
    if after is None or (isinstance(after.key, int) and after.key > 0):
        grown = (
            select(EVENTS, growth.c.growth, growth.c.growth.label("sort_key"), *_TRIAGE_COLUMNS)
            .select_from(
                EVENTS.join(growth, growth.c.event_id == E.id).outerjoin(triage, T.event_id == E.id)
            )
            .where(E.merged_into.is_(None))
        )
        grown = _filters(session, grown, filters)
        if after is not None:
            key = growth.c.growth
            grown = grown.where(or_(key < after.key, and_(key == after.key, E.id < after.id)))
        grown = grown.order_by(growth.c.growth.desc(), E.id.desc()).limit(limit)
        rows = list(session.execute(grown).all())
    if len(rows) == limit:
        return rows
    zero = literal(0, Integer)
    quiet = (
        select(EVENTS, zero.label("growth"), zero.label("sort_key"), *_TRIAGE_COLUMNS)
        .select_from(EVENTS.outerjoin(triage, T.event_id == E.id))
        .where(E.merged_into.is_(None), E.id.not_in(select(growth.c.event_id)))
    )
    quiet = _filters(session, quiet, filters)
    if after is not None and after.key == 0:
        quiet = quiet.where(E.id < after.id)
    quiet = quiet.order_by(E.id.desc()).limit(limit - len(rows))
    return rows + list(session.execute(quiet).all())


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


def event_row(session: Session, event_id: int) -> Row[Any] | None:
    """One event's columns and its triage columns."""
    query = (
        select(EVENTS, *_TRIAGE_COLUMNS)
        .select_from(EVENTS.outerjoin(table_of(EventTriage), T.event_id == E.id))
        .where(E.id == event_id)
    )
    return session.execute(query).first()


def merged_into_event(session: Session, event_id: int) -> Sequence[Row[Any]]:
    """The events merged into this one: id, title, and when (their last update)."""
    query = (
        select(E.id, E.title, E.updated_at.label("at"))
        .where(E.merged_into == event_id)
        .order_by(E.id)
    )
    return session.execute(query).all()


def split_off_event(session: Session, event_id: int) -> Sequence[Row[Any]]:
    """The events whose reports were split off this one: id, title, and when (creation)."""
    query = (
        select(E.id, E.title, E.created_at.label("at"))
        .where(E.split_from == event_id)
        .order_by(E.id)
    )
    return session.execute(query).all()


def event_titles(session: Session, event_ids: list[int]) -> dict[int, str | None]:
    """The stored titles of these events (merged-away ones too)."""
    if not event_ids:
        return {}
    rows = session.execute(select(E.id, E.title).where(E.id.in_(event_ids)))
    return {row.id: row.title for row in rows}


def sources_by_article(session: Session, article_ids: list[int]) -> dict[int, list[str]]:
    """Names of every source that carried each article (its sightings), first carrier first."""
    if not article_ids:
        return {}
    rows = session.execute(
        select(col(Sighting.article_id), col(Source.name))
        .join(Source, col(Sighting.source_id) == Source.id)
        .where(col(Sighting.article_id).in_(article_ids))
        .order_by(col(Sighting.first_seen), col(Sighting.id))
    ).all()
    out: dict[int, list[str]] = defaultdict(list)
    for article_id, name in rows:
        out[article_id].append(name)
    return out


def event_articles(
    session: Session, event_ids: list[int], *, since: datetime | None = None
) -> dict[int, list[tuple[Article, str | None]]]:
    """Articles of each event (first seen first) with the name of the source that first had
    it; `since` keeps those first seen since then."""
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


def article_times(session: Session, event_ids: list[int]) -> dict[int, list[Row[Any]]]:
    """Per event: every article's id, title, published and first_seen (for timelines and
    representative titles), without the texts."""
    if not event_ids:
        return {}
    rows = session.execute(
        select(A.id, A.event_id, A.title, A.published, A.first_seen)
        .where(A.event_id.in_(event_ids))
        .order_by(A.first_seen, A.id)
    )
    out: dict[int, list[Row[Any]]] = defaultdict(list)
    for row in rows:
        out[row.event_id].append(row)
    return out


def source_names(session: Session) -> list[tuple[int, str]]:
    """Every source's id and name, by name (the page's source filter)."""
    rows = session.execute(select(col(Source.id), col(Source.name)).order_by(col(Source.name)))
    return [(int(i), str(n)) for i, n in rows]


def languages_since(session: Session, since: datetime) -> list[str]:
    """The languages of articles first seen since `since` (the page's language filter)."""
    rows = session.execute(
        select(A.language)
        .where(A.first_seen >= since, A.language.is_not(None))
        .group_by(A.language)
        .order_by(A.language)
    )
    return [str(r[0]) for r in rows]


def matched_rules(session: Session) -> list[str]:
    """Names of the rules that matched some event (the page's rule filter)."""
    return matched_rule_names(session)
