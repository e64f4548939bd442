"""Tables of the scaled mode's grouper (`newswatch run --role group`, Postgres): the lease
that fences a deposed grouper, the log of the batches it grouped, in order, and the
sightings of known articles that fetch workers stored for it to count.

Public interface like every table: documented in docs/schema.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Text
from sqlmodel import Field, SQLModel

from newswatch.store.columns import UTCDateTime, utcnow


def _ts(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


class GrouperLease(SQLModel, table=True):
    """One row (id 1): which grouper leads, and since which epoch. Every batch the leader
    writes checks the epoch in its own transaction, so a grouper whose epoch was bumped by
    a successor writes nothing (a fencing token, docs/decisions/0166)."""

    __tablename__ = "grouper_lease"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    epoch: int = Field(default=0, sa_type=BigInteger)
    holder: str = Field(sa_type=Text)
    heartbeat_at: datetime = _ts(default_factory=utcnow)
    # Where the leader's in-memory state starts: the origin row of grouper_batches (the
    # window it restored), then every batch after it replayed in order. A standby builds the
    # same state from it.
    origin_seq: int = Field(default=0, sa_type=BigInteger)


class GrouperBatch(SQLModel, table=True):
    """A batch of articles the leader grouped, in the order it grouped them: standbys replay
    the log to hold the leader's state, so a takeover continues the same events."""

    __tablename__ = "grouper_batches"

    seq: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    epoch: int = Field(sa_type=BigInteger)
    article_ids: list[int] = Field(sa_column=Column(JSON, nullable=False))
    # An origin row instead (no articles): the window a leader restored when it took over —
    # its start, each article's event then, the events kept apart, and the last batch it
    # held — so a standby restores the same state whatever was merged since.
    origin: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = _ts(default_factory=utcnow)


class LateSighting(SQLModel, table=True):
    """A fetch worker stored a new sighting of an article that was stored already (another
    source carried it too): its event may have one more source. The grouper takes these
    rows in order, counts them into their events (growth notifications included) and
    deletes them, so the table holds only what waits (docs/decisions/0166)."""

    __tablename__ = "late_sightings"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    article_id: int = Field(sa_type=BigInteger)
    source_id: int = Field(sa_type=BigInteger)
