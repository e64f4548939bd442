"""Triage of events by people: acknowledged (seen), starred, muted.

One row per event that anyone triaged; each mark has its time and, when the writer named
themselves, who set it. A muted event's later growth does not notify (the alerts stage asks
`muted_events`). The row goes with its event (ON DELETE CASCADE).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlmodel import Field, Session, SQLModel, col

from newswatch.store.columns import UTCDateTime, utcnow

Mark = Literal["ack", "star", "mute"]
MARKS: tuple[Mark, ...] = ("ack", "star", "mute")
# The columns of each mark: (time it was set, who set it).
_COLUMNS: dict[Mark, tuple[str, str]] = {
    "ack": ("acknowledged_at", "acknowledged_by"),
    "star": ("starred_at", "starred_by"),
    "mute": ("muted_at", "muted_by"),
}
MAX_NAME = 100


class EventTriage(SQLModel, table=True):
    """What people decided about an event; a mark is set when its time is not null."""

    __tablename__ = "event_triage"

    event_id: int = Field(
        primary_key=True,
        foreign_key="events.id",
        ondelete="CASCADE",
        sa_column_kwargs={"autoincrement": False},
    )
    acknowledged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    acknowledged_by: str | None = Field(default=None, max_length=MAX_NAME)
    starred_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    starred_by: str | None = Field(default=None, max_length=MAX_NAME)
    muted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    muted_by: str | None = Field(default=None, max_length=MAX_NAME)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


def set_mark(
    session: Session,
    event_id: int,
    mark: Mark,
    on: bool,
    *,
    by: str | None = None,
    now: datetime | None = None,
) -> EventTriage:
    """Set (`on`) or clear a mark of an event. Setting a mark already set keeps its first
    time and author: the second click of two people says nothing new."""
    when = now or utcnow()
    row = session.get(EventTriage, event_id)
    if row is None:
        row = EventTriage(event_id=event_id, updated_at=when)
        session.add(row)
    at_column, by_column = _COLUMNS[mark]
    if on and getattr(row, at_column) is None:
        setattr(row, at_column, when)
        setattr(row, by_column, (by or None) and by[:MAX_NAME])
    elif not on:
        setattr(row, at_column, None)
        setattr(row, by_column, None)
    row.updated_at = when
    session.flush()
    return row


def triage_of(session: Session, event_ids: Iterable[int]) -> dict[int, EventTriage]:
    """The triage rows of these events (events nobody triaged are absent)."""
    ids = list(event_ids)
    if not ids:
        return {}
    rows = session.execute(select(EventTriage).where(col(EventTriage.event_id).in_(ids))).scalars()
    return {row.event_id: row for row in rows}


def carry_marks(session: Session, gone: int, keep: int, now: datetime) -> None:
    """When event `gone` is merged into `keep`: a star moves to the survivor (an analyst
    following a story keeps following it). "Seen" and "muted" do not: the survivor now holds
    reports its marker has not seen, and a service that must not miss a development does not
    silence a grown story on a mark set on a part of it."""
    absorbed = session.get(EventTriage, gone)
    if absorbed is None or absorbed.starred_at is None:
        return
    survivor = session.get(EventTriage, keep)
    if survivor is None:
        survivor = EventTriage(event_id=keep, updated_at=now)
        session.add(survivor)
    if survivor.starred_at is None:
        survivor.starred_at, survivor.starred_by = absorbed.starred_at, absorbed.starred_by
        survivor.updated_at = now
    session.flush()


def muted_events(session: Session, event_ids: Iterable[int]) -> set[int]:
    """Which of `event_ids` someone muted (one statement for an alerts round)."""
    ids = list(event_ids)
    if not ids:
        return set()
    query = select(col(EventTriage.event_id)).where(
        col(EventTriage.event_id).in_(ids), col(EventTriage.muted_at).is_not(None)
    )
    return set(session.execute(query).scalars())


def is_muted(session: Session, event_id: int) -> bool:
    """Whether someone muted the event: its growth is not notified."""
    return event_id in muted_events(session, [event_id])
