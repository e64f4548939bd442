"""Article URLs a page, sitemap or full-text source has already fetched: never again.

Kept in the store (table `page_urls`) so the rule survives restarts. A URL is recorded once
its fetch ended in a lasting way (stored, no text in it, too large, 4xx); which fetches those
are is the fetch stage's decision (fetch/page_sources.py, `is_lasting`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Text, UniqueConstraint, select
from sqlmodel import Field, Session, SQLModel

from newswatch.store.columns import UTCDateTime, utcnow
from newswatch.store.models import Article, table_of
from newswatch.store.upsert import insert_ignoring_conflicts

LOOKUP_CHUNK = 500


class PageURL(SQLModel, table=True):
    """An article URL a source has fetched (or refused) once."""

    __tablename__ = "page_urls"
    __table_args__ = (
        UniqueConstraint("source_id", "url", name="uq_page_urls_source_url"),
        Index("ix_page_urls_first_seen", "first_seen"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="sources.id", ondelete="CASCADE")
    url: str = Field(sa_type=Text)  # canonical form (dedupe_keys.canonical_url)
    first_seen: datetime = Field(sa_type=UTCDateTime, default_factory=utcnow)
    outcome: str = Field(max_length=32)


PAGE_URLS = table_of(PageURL)
ARTICLES = table_of(Article)


def already_seen(session: Session, source_id: int, urls: list[str]) -> set[str]:
    """The canonical `urls` this source fetched before, or that are stored articles."""
    found: set[str] = set()
    for i in range(0, len(urls), LOOKUP_CHUNK):
        part = urls[i : i + LOOKUP_CHUNK]
        query = select(PAGE_URLS.c.url).where(
            PAGE_URLS.c.source_id == source_id, PAGE_URLS.c.url.in_(part)
        )
        found.update(session.execute(query).scalars())
        query = select(ARTICLES.c.canonical_url).where(ARTICLES.c.canonical_url.in_(part))
        found.update(session.execute(query).scalars())
    return found


def record_seen(session: Session, source_id: int, done: dict[str, str]) -> None:
    """Remember `done` ({canonical URL: outcome}) for the source, in the caller's transaction."""
    if not done:
        return
    now = utcnow()
    rows = [
        {"source_id": source_id, "url": url, "outcome": outcome[:32], "first_seen": now}
        for url, outcome in done.items()
    ]
    session.execute(insert_ignoring_conflicts(session, PAGE_URLS), rows)
