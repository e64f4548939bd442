"""Small reads of events for commands (the grouping stage's own statements are elsewhere)."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session, col

from newswatch.store.models import Article, Event

LOOKUP_CHUNK = 500


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
