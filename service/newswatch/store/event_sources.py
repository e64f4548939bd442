"""Each source's first sighting of each event: what the events list's growth sort counts.

One row per (event, source) that carried any of the event's articles, with the earliest
`sightings.first_seen` of that source among them. The database keeps it in step itself
(triggers of migration 0016, on both engines, decision 0207): a sighting stored for a grouped
article, an article placed in an event or moved to another (merge, split), a sighting or an
article deleted. So every writer is covered, the store's and users' SQL alike, and the
growth of an event (sources whose first sighting falls in the last hour) is a range read of
`ix_event_sources_first_seen`, not a grouping of every sighting of the hour's events.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from newswatch.store.columns import UTCDateTime


class EventSource(SQLModel, table=True):
    """That a source carried an event, and when it first did (derived from sightings)."""

    __tablename__ = "event_sources"
    __table_args__ = (
        # The sources that joined an event in a span (the growth sort): a range read whose
        # rows name their event, without a visit of the table.
        Index("ix_event_sources_first_seen", "first_seen", "event_id"),
    )

    # No foreign key to events: articles name their event before the grouping stage writes
    # the event's row (in the same transaction), as articles.event_id does.
    event_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    source_id: int = Field(
        primary_key=True,
        foreign_key="sources.id",
        ondelete="CASCADE",
        sa_column_kwargs={"autoincrement": False},
    )
    first_seen: datetime = Field(sa_type=UTCDateTime)
