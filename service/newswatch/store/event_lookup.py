"""Small reads of events for commands (the grouping stage's own statements are elsewhere)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Numeric,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    select,
    true,
    union,
)
from sqlmodel import Session, col

from newswatch.store.columns import as_utc
from newswatch.store.models import Article, Event, table_of
from newswatch.store.timing import article_time_sql

LOOKUP_CHUNK = 500
# Merges followed from one event to the event it lives in now (event_views.MAX_MERGE_HOPS:
# a chain is a handful of merges; the cap guards against a cycle in damaged rows).
MAX_MERGE_HOPS = 50

EVENTS = table_of(Event)
E = EVENTS.c
A = table_of(Article).c


def event_titles(session: Session, ids: list[int]) -> dict[int, str | None]:
    """The title of each event in `ids` that exists."""
    titles: dict[int, str | None] = {}
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), LOOKUP_CHUNK):
        chunk = ordered[start : start + LOOKUP_CHUNK]
        query = select(col(Event.id), col(Event.title)).where(col(Event.id).in_(chunk))
        titles.update({row.id: row.title for row in session.execute(query)})
    return titles


def events_of_articles(session: Session, article_ids: list[int]) -> dict[int, int | None]:
    """The event each of these articles is in now (None: in none); ids not stored are left out."""
    found: dict[int, int | None] = {}
    ordered = sorted(set(article_ids))
    for start in range(0, len(ordered), LOOKUP_CHUNK):
        chunk = ordered[start : start + LOOKUP_CHUNK]
        query = select(col(Article.id), col(Article.event_id)).where(col(Article.id).in_(chunk))
        found.update({row[0]: row[1] for row in session.execute(query)})
    return found


def resolve_events(session: Session, ids: Iterable[int]) -> dict[int, int]:
    """The event each of `ids` lives in now: itself, or the event it was merged into through
    any number of merges. One recursive query a LOOKUP_CHUNK ids (not one an id, nor one a
    merge); ids of no stored event are left out."""
    found: dict[int, int] = {}
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), LOOKUP_CHUNK):
        chunk = ordered[start : start + LOOKUP_CHUNK]
        chain = (
            select(E.id.label("start"), E.id.label("at"), E.merged_into.label("next"))
            .add_columns(literal(0).label("hops"))
            .where(E.id.in_(chunk))
            .cte("merge_chain", recursive=True)
        )
        step = select(chain.c.start, E.id, E.merged_into, chain.c.hops + 1).join(
            EVENTS, E.id == chain.c.next
        )
        chain = chain.union_all(step.where(chain.c.hops < MAX_MERGE_HOPS))
        query = select(chain.c.start, chain.c.at).where(chain.c.next.is_(None))
        found.update({row.start: row.at for row in session.execute(query)})
    return found


def merged_aliases(session: Session, event_id: int) -> list[int]:
    """`event_id` and every event merged into it, directly or through others (the ids its
    articles' neighbours may have recorded), in one recursive query."""
    tree = (
        select(E.id.label("id"), literal(0).label("hops"))
        .where(E.id == event_id)
        .cte("merged_tree", recursive=True)
    )
    step = select(E.id, tree.c.hops + 1).join(EVENTS, E.merged_into == tree.c.id)
    tree = tree.union_all(step.where(tree.c.hops < MAX_MERGE_HOPS))
    return sorted({row.id for row in session.execute(select(tree.c.id))})


def near_misses_of_event(session: Session, event_id: int) -> list[tuple[int, Any]]:
    """(article id, the `near` entry of its stored explanation) for each article of the
    event: the candidates it was kept out of, without the rest of the article."""
    query = select(A.id, _near_column()).where(A.event_id == event_id).order_by(A.id)
    return [(row[0], row[1]) for row in session.execute(query)]


def near_misses_naming(
    session: Session, event_ids: list[int], exclude_event: int, window: timedelta
) -> list[tuple[int, int, Any]]:
    """(article id, its event, its `near` entry) for the articles of other events than
    `exclude_event` whose recorded near misses name one of `event_ids`: the articles those
    events kept out. Only articles a grouper could have compared with one of them are read
    (decision 0180): grouped after the first of them was opened (an event's id is the id of
    an article, and articles are grouped in id order), at a time within `window` (the
    grouping window) of their span: a candidate's first report minus the window to its last
    plus the window (Clusterer._within). The span is the widest of the events and those split
    off them, which hold the reports they had when compared."""
    if not event_ids:
        return []
    span = _span_with_split_offs(session, event_ids)
    if span is None:
        return []
    low, high = span[0] - window, span[1] + window
    when = article_time_sql(A.published, A.first_seen)
    # An article's time is its publication or its first sighting: one of the two is in the
    # range. The ids come from the indexes on both (a condition on the id alone would have
    # SQLite scan the rest of the table), then the time itself is checked.
    in_range = union(
        select(A.id).where(A.published.between(low, high)),
        select(A.id).where(A.first_seen.between(low, high)),
    )
    query = (
        select(A.id, A.event_id, _near_column())
        .where(
            A.id.in_(in_range),
            A.id > min(event_ids),
            when.between(low, high),
            A.event_id.is_not(None),
            A.event_id != exclude_event,
            _near_names_any(session, event_ids),
        )
        .order_by(A.id)
    )
    return [(row[0], row[1], row[2]) for row in session.execute(query)]


def _span_with_split_offs(session: Session, event_ids: list[int]) -> tuple[Any, Any] | None:
    """The first and last report times over `event_ids` and every event split off them
    (and off those, MAX_MERGE_HOPS deep): None when none of them is stored."""
    tree = (
        select(E.id.label("id"), literal(0).label("hops"))
        .where(E.id.in_(event_ids))
        .cte("split_tree", recursive=True)
    )
    step = select(E.id, tree.c.hops + 1).join(
        EVENTS, and_(E.split_from == tree.c.id, E.id != tree.c.id)
    )
    tree = tree.union_all(step.where(tree.c.hops < MAX_MERGE_HOPS))
    query = select(func.min(E.first_seen), func.max(E.last_seen)).where(E.id.in_(select(tree.c.id)))
    first, last = session.execute(query).one()
    if first is None or last is None:
        return None
    return as_utc(first), as_utc(last)


def _near_column() -> ColumnElement[Any]:
    """The `near` list of an article's stored explanation, read as JSON."""
    return A.group_explain["near"].label("near")


def _near_names_any(session: Session, event_ids: list[int]) -> ColumnElement[bool]:
    """Whether an article's recorded near misses hold an entry whose event is one of
    `event_ids`. The two stores spell a walk over a JSON array differently (SQLite's
    json_each, Postgres's json_array_elements); a `near` that is not an array names none."""
    if session.get_bind().dialect.name == "postgresql":
        return _postgres_near_names_any(event_ids)
    return _sqlite_near_names_any(event_ids)


def _postgres_near_names_any(event_ids: list[int]) -> ColumnElement[bool]:
    near = A.group_explain["near"]
    array = case(
        (func.json_typeof(near) == "array", near),
        else_=cast(literal("[]"), near.type),
    )
    element = func.json_array_elements(array).table_valued("value")
    value = element.c.value
    number = case((func.json_typeof(value.op("->")("event")) == "number", value.op("->>")("event")))
    return exists(select(true()).select_from(element).where(cast(number, Numeric).in_(event_ids)))


def _sqlite_near_names_any(event_ids: list[int]) -> ColumnElement[bool]:
    element = func.json_each(A.group_explain, "$.near").table_valued("value", "type")
    named = func.json_extract(element.c.value, "$.event")
    return exists(
        select(true()).select_from(element).where(element.c.type == "object", named.in_(event_ids))
    )
