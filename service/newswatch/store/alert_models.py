"""Tables of the alerts stage: the rules each article matched, per-(rule, event) state,
silences, the outbox (the stage reads and writes them through store/alerts.py,
store/outbox.py and store/deliveries.py).

Public interface like every table: documented in docs/schema.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from newswatch.store.columns import UTCDateTime, utcnow


def _ts(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


class ArticleMatch(SQLModel, table=True):
    """The rules an article matched, each with the words of its query found in the article:
    one row an article (decision 0225). A rule is recorded when a source carrying the
    article counts for it; which carriers count is read from the sightings when a match is
    judged (the article's event and time from the article)."""

    __tablename__ = "article_matches"

    article_id: int = Field(
        primary_key=True,
        foreign_key="articles.id",
        ondelete="CASCADE",
        sa_column_kwargs={"autoincrement": False},
    )
    # {rule name: the words and phrases of its query found in the article}
    rules: dict[str, list[str]] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )


class AlertState(SQLModel, table=True):
    """What has been decided for a (rule, event): notified (with how many sources), or
    suppressed by a silence. Makes "one notification per (rule, event)" hold across restarts."""

    __tablename__ = "alert_state"

    rule: str = Field(primary_key=True, max_length=100)
    event_id: int = Field(primary_key=True, foreign_key="events.id", ondelete="CASCADE")
    revision: int = 0
    sources_notified: int = 0
    status: str = Field(default="notified", max_length=16)  # notified | silenced | capped
    first_at: datetime = _ts(default_factory=utcnow)
    last_at: datetime = _ts(default_factory=utcnow)


class Silence(SQLModel, table=True):
    __tablename__ = "silences"

    id: int | None = Field(default=None, primary_key=True)
    rule: str | None = Field(default=None, max_length=100)  # None: every rule
    until: datetime = _ts(index=True)
    reason: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = _ts(default_factory=utcnow)


class Notification(SQLModel, table=True):
    """The outbox: one row per notification to one channel, written in the transaction of the
    event change that caused it; the delivery worker sends it and records the outcome."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("channel", "idempotency_key", name="uq_notifications_channel_key"),
        Index("ix_notifications_due", "status", "not_before"),
    )

    id: int | None = Field(default=None, primary_key=True)
    rule: str = Field(max_length=100, index=True)
    channel: str = Field(max_length=100)
    event_id: int = Field(index=True)
    revision: int = 1
    idempotency_key: str = Field(max_length=300)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16)  # pending | sending | sent | dead
    attempts: int = 0
    not_before: datetime = _ts(default_factory=utcnow)
    batch_key: str | None = Field(default=None, max_length=300)
    created_at: datetime = _ts(default_factory=utcnow)
    claimed_at: datetime | None = _ts(default=None)
    # Set at the first failed send: retries stop (the row is dead) after this time.
    retry_until: datetime | None = _ts(default=None)
    sent_at: datetime | None = _ts(default=None)
    last_error: str | None = Field(default=None, sa_type=Text)
    response_status: int | None = None
