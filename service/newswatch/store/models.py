"""Tables of the foundation: sources, their fetch log, articles and sightings.

These tables are a public interface: users query them with SQL. Every column is documented
in docs/schema.md; change both together, and add an Alembic migration.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    LargeBinary,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from newswatch.store.columns import UTCDateTime, utcnow


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a `table=True` model, for statements written in SQLAlchemy Core."""
    # SQLModel's metaclass sets __table__ but its type declarations do not name it.
    return model.__table__  # type: ignore[attr-defined]


def _ts(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


class Source(SQLModel, table=True):
    __tablename__ = "sources"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    url: str = Field(sa_type=Text, description="current URL (follows permanent redirects)")
    configured_url: str = Field(sa_type=Text)
    kind: str = Field(default="auto", max_length=16)  # auto | feed | page | sitemap
    origin: str = Field(default="cli", max_length=16)  # config | cli | opml
    enabled: bool = True
    interval_seconds: int | None = None
    cron: str | None = Field(default=None, max_length=100)
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    title: str | None = Field(default=None, sa_type=Text)
    etag: str | None = Field(default=None, sa_type=Text)
    last_modified: str | None = Field(default=None, sa_type=Text)
    last_fetch_at: datetime | None = _ts(default=None)
    last_success_at: datetime | None = _ts(default=None)
    last_status: int | None = None
    last_outcome: str | None = Field(default=None, max_length=32)
    last_error: str | None = Field(default=None, sa_type=Text)
    consecutive_errors: int = 0
    # How long the last fetch waited for its host's turn (per-host politeness): the lag of a
    # source whose host has more sources than its gap allows (fetch/http.py HostGate).
    host_wait_seconds: float | None = None
    # Entries of the feed not stored yet: a poll stores at most NEWSWATCH_MAX_ENTRIES_PER_POLL.
    pending_entries: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # 410 Gone answers in a row; at NEWSWATCH_GONE_PAUSE_AFTER the source is paused: not
    # polled until `sources resume` or an edit of its config entry clears `paused_reason`.
    consecutive_gone: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    paused_reason: str | None = Field(default=None, sa_type=Text)
    next_fetch_at: datetime | None = _ts(default=None, index=True)
    created_at: datetime = _ts(default_factory=utcnow)


class Fetch(SQLModel, table=True):
    """One request for a source (the fetch log)."""

    __tablename__ = "fetches"
    __table_args__ = (Index("ix_fetches_source_started", "source_id", "started_at"),)

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="sources.id", ondelete="CASCADE")
    started_at: datetime = _ts(default_factory=utcnow)
    url: str = Field(sa_type=Text)
    status: int | None = None
    outcome: str = Field(max_length=32)
    bytes: int = Field(default=0, sa_type=BigInteger)
    duration_ms: int = 0
    entries: int = 0
    new_articles: int = 0
    error: str | None = Field(default=None, sa_type=Text)


class Article(SQLModel, table=True):
    __tablename__ = "articles"

    id: int | None = Field(default=None, primary_key=True)
    canonical_url: str | None = Field(default=None, sa_type=Text, unique=True)
    url: str | None = Field(default=None, sa_type=Text)
    guid: str | None = Field(default=None, sa_type=Text, index=True)
    title: str | None = Field(default=None, sa_type=Text)
    summary: str | None = Field(default=None, sa_type=Text)
    text: str | None = Field(default=None, sa_type=Text)
    author: str | None = Field(default=None, sa_type=Text)
    published: datetime | None = _ts(default=None, index=True)
    first_seen: datetime = _ts(default_factory=utcnow, index=True)
    language: str | None = Field(default=None, max_length=16)
    # "declared" (by the feed, entry or page) or "detected" (from the text); None with no language.
    language_source: str | None = Field(default=None, max_length=8)
    content_hash: str = Field(max_length=64, index=True)
    source_id: int | None = Field(default=None, foreign_key="sources.id", ondelete="SET NULL")
    event_id: int | None = Field(default=None, index=True)
    duplicate_of: int | None = Field(
        default=None, foreign_key="articles.id", ondelete="SET NULL", index=True
    )
    # How the grouping stage placed the article (see events): stage, score and explanation.
    group_stage: str | None = Field(default=None, max_length=16)  # new | similar | duplicate
    group_score: float | None = None
    group_explain: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    # MinHash signature of the text's word shingles (near-duplicate stage), raw uint32 bytes.
    fingerprint: bytes | None = Field(default=None, sa_column=Column(LargeBinary))


class Event(SQLModel, table=True):
    """Reports about one real-world happening; its id is the id of the article that opened it."""

    __tablename__ = "events"
    __table_args__ = (
        # The events list reads open events (merged_into null) newest or largest first; these
        # hand them over in that order, so no sort of every open event (decision 0201).
        Index("ix_events_open_last_seen", "merged_into", "last_seen", "id"),
        Index("ix_events_open_size", "merged_into", "source_count", "id"),
        # The few events split off another (events near: decision 0180; migration 0017).
        Index(
            "ix_events_split_from",
            "split_from",
            sqlite_where=text("split_from IS NOT NULL"),
            postgresql_where=text("split_from IS NOT NULL"),
        ),
    )

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    title: str | None = Field(default=None, sa_type=Text)
    first_seen: datetime = _ts(index=True)
    last_seen: datetime = _ts(index=True)
    article_count: int = 0
    source_count: int = 0
    top_entities: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    merged_into: int | None = Field(
        default=None, foreign_key="events.id", ondelete="SET NULL", index=True
    )
    # The event this one's reports were split off (it held two events); an events.id.
    split_from: int | None = None
    revision: int = 1
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)


class Sighting(SQLModel, table=True):
    """That a source carried an article: the same article in two feeds has two sightings."""

    __tablename__ = "sightings"
    __table_args__ = (
        UniqueConstraint("article_id", "source_id", name="uq_sightings_article_source"),
        # Finds a source's entry by GUID without scanning all its sightings.
        Index("ix_sightings_source_guid", "source_id", "guid"),
        # Sightings of the last hour: the events that grew (sort by growth, decision 0201).
        Index("ix_sightings_first_seen", "first_seen"),
    )

    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(foreign_key="articles.id", ondelete="CASCADE", index=True)
    source_id: int = Field(foreign_key="sources.id", ondelete="CASCADE")
    guid: str | None = Field(default=None, sa_type=Text)
    entry_url: str | None = Field(default=None, sa_type=Text)
    first_seen: datetime = _ts(default_factory=utcnow)
