"""The events table and the articles' place in it: what the grouping stage writes, and the
one way a merge or a split is applied to every table that names an event.

Neutral types: EventStats (what the events table counts of an event), Merge and SplitOff
(a regrouping, in the order the clustering made it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, func, insert, or_, select, update
from sqlmodel import Session

from newswatch.store.alerts import merge_alert_states
from newswatch.store.columns import as_utc
from newswatch.store.event_triage import carry_marks
from newswatch.store.models import Article, Event, Sighting, table_of
from newswatch.store.timing import article_time_sql

ARTICLES = table_of(Article)
EVENTS = table_of(Event)
SIGHTINGS = table_of(Sighting)
A = ARTICLES.c
E = EVENTS.c
# Events (or moved articles) handled in one statement.
CHUNK = 500


@dataclass
class EventStats:
    """What the events table counts of an event."""

    articles: int
    first: datetime
    last: datetime
    sources: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Merge:
    """Event `gone` was absorbed into event `keep`."""

    gone: int
    keep: int


@dataclass(frozen=True)
class SplitOff:
    """Articles `moved` of event `event_id` form the new event `new_event_id`."""

    event_id: int
    new_event_id: int
    moved: tuple[int, ...]


Regrouping = Merge | SplitOff


# --- the grouping window, read at start -------------------------------------------------
def latest_first_seen(session: Session) -> datetime | None:
    return session.execute(select(func.max(A.first_seen))).scalar()


def window_articles(session: Session, since: datetime, chunk: int) -> Iterator[Row[Any]]:
    """Grouped articles that count (or were first seen) at or after `since`, in id order,
    read `chunk` rows at a time: id, event_id, title, text, summary, published, first_seen,
    group_stage, duplicate_of."""
    query = (
        select(
            A.id,
            A.event_id,
            A.title,
            A.text,
            A.summary,
            A.published,
            A.first_seen,
            A.group_stage,
            A.duplicate_of,
        )
        .where(
            A.event_id.is_not(None),
            or_(A.first_seen >= since, article_time_sql(A.published, A.first_seen) >= since),
        )
        .order_by(A.id)
        .execution_options(yield_per=chunk)
    )
    yield from session.execute(query)


def splits_since(session: Session, since: datetime) -> list[tuple[int, int]]:
    """(event, the event it was split off) for split events seen since `since`."""
    query = select(E.id, E.split_from).where(E.split_from.is_not(None), E.last_seen >= since)
    return [(row[0], row[1]) for row in session.execute(query)]


# --- ingest -----------------------------------------------------------------------------
def place_articles(session: Session, rows: list[dict[str, Any]]) -> None:
    """Write the event columns of stored articles: rows of id, event_id, duplicate_of,
    group_stage, group_score, group_explain, fingerprint."""
    if not rows:
        return
    columns = ("event_id", "duplicate_of", "group_stage", "group_score", "group_explain")
    statement = (
        update(ARTICLES)
        .where(A.id == bindparam("b_id"))
        .values({name: bindparam(f"b_{name}") for name in (*columns, "fingerprint")})
    )
    bound = [{f"b_{key}": value for key, value in row.items()} for row in rows]
    session.connection().execute(statement, bound)


def insert_events(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(EVENTS), rows)


def apply_regroupings(session: Session, regroupings: Sequence[Regrouping], now: datetime) -> None:
    """Merges and splits, in the order they happened, applied to every table that names an
    event: an absorbed event keeps its row (merged_into) and hands over its articles (their
    rule matches follow them: article_matches names no event) and alert state; a split opens
    a row for the moved articles (split_from) (the notification history stays with the event
    they left)."""
    for change in regroupings:
        if isinstance(change, Merge):
            _merge(session, change, now)
        else:
            _split(session, change, now)


def _merge(session: Session, merge: Merge, now: datetime) -> None:
    gone, keep = merge.gone, merge.keep
    session.execute(update(ARTICLES).where(A.event_id == gone).values(event_id=keep))
    session.execute(
        update(EVENTS)
        .where(or_(E.id == gone, E.merged_into == gone))
        .values(merged_into=keep, updated_at=now, revision=E.revision + 1)
    )
    merge_alert_states(session, gone, keep)
    carry_marks(session, gone, keep, now)


def _split(session: Session, split: SplitOff, now: datetime) -> None:
    new_id = split.new_event_id
    title = session.execute(select(A.title).where(A.id == new_id)).scalar()
    row: dict[str, Any] = {
        "id": new_id,
        "title": title,
        "first_seen": now,  # the caller's stats set the counts and the span
        "last_seen": now,
        "article_count": len(split.moved),
        "source_count": 1,
        "top_entities": [],
        "merged_into": None,
        "split_from": split.event_id,
        "revision": 0,
        "created_at": now,
        "updated_at": now,
    }
    session.execute(insert(EVENTS), [row])
    for start in range(0, len(split.moved), CHUNK):
        moved = split.moved[start : start + CHUNK]
        session.execute(update(ARTICLES).where(A.id.in_(moved)).values(event_id=new_id))


def events_of(session: Session, article_ids: list[int]) -> dict[int, int]:
    """The event of each grouped article among `article_ids`."""
    if not article_ids:
        return {}
    query = select(A.id, A.event_id).where(A.id.in_(article_ids), A.event_id.is_not(None))
    return {row.id: row.event_id for row in session.execute(query)}


def count_events(session: Session, event_ids: Iterable[int]) -> dict[int, EventStats]:
    """Articles, distinct sources and time span (article_time) of events, counted."""
    ids = sorted(set(event_ids))
    out: dict[int, EventStats] = {}
    when = article_time_sql(A.published, A.first_seen)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        query = (
            select(
                A.event_id,
                func.count(A.id).label("articles"),
                func.min(when).label("first"),
                func.max(when).label("last"),
            )
            .where(A.event_id.in_(chunk))
            .group_by(A.event_id)
        )
        for r in session.execute(query):
            out[r.event_id] = EventStats(r.articles, as_utc(r.first), as_utc(r.last))
        pairs = (
            select(A.event_id, SIGHTINGS.c.source_id)
            .select_from(ARTICLES.join(SIGHTINGS, SIGHTINGS.c.article_id == A.id))
            .where(A.event_id.in_(chunk))
            .distinct()
        )
        for event_id, source_id in session.execute(pairs):
            if event_id in out:
                out[event_id].sources.add(source_id)
    return out


def write_event_stats(session: Session, rows: list[dict[str, Any]]) -> None:
    """Rows of id, article_count, source_count, first_seen, last_seen, top_entities,
    updated_at; each event's revision goes up by one."""
    if not rows:
        return
    names = ("article_count", "source_count", "first_seen", "last_seen", "top_entities")
    statement = (
        update(EVENTS)
        .where(E.id == bindparam("b_id"))
        .values(
            {name: bindparam(f"b_{name}") for name in (*names, "updated_at")}
            | {"revision": E.revision + 1}
        )
    )
    bound = [{f"b_{key}": value for key, value in row.items()} for row in rows]
    session.connection().execute(statement, bound)
