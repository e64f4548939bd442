"""The scaled mode's claims on sources: which are due, who polls them, and the notice that
articles were stored (Postgres only; docs/decisions/0161-scaled-fetching-on-procrastinate.md).

A claim pushes a due source's `next_fetch_at` to the claim's *lease* (one timestamp for the
batch) in the statement that selects it, under `FOR UPDATE SKIP LOCKED`: two schedulers (or
two ticks) never claim one source, and no source is in two batches. The lease doubles as the
batch's token: a fetch worker polls only the sources still leased with its batch's value, so
a batch retried after its worker died skips what was polled before, and a batch whose lease
ran out (its sources claimed again by a later batch) polls nothing twice. The poll itself
sets `next_fetch_at` to the next due time, as in the single-process mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, text
from sqlmodel import Session, col, select

from newswatch.store.columns import UTCDateTime
from newswatch.store.grouper_lease import ARTICLES_CHANNEL, notify
from newswatch.store.models import Source
from newswatch.store.sources import SourceSnapshot


@dataclass(frozen=True)
class ClaimedSource:
    id: int
    url: str


_CLAIM = text(
    """
    UPDATE sources SET next_fetch_at = :lease
    WHERE id IN (
        SELECT id FROM sources
        WHERE enabled AND (next_fetch_at <= :now OR next_fetch_at IS NULL)
        ORDER BY next_fetch_at NULLS FIRST, id
        FOR UPDATE SKIP LOCKED
        LIMIT :limit
    )
    RETURNING id, url
    """
).bindparams(bindparam("now", type_=UTCDateTime()), bindparam("lease", type_=UTCDateTime()))


def claim_due_sources(
    session: Session, now: datetime, lease: datetime, limit: int
) -> list[ClaimedSource]:
    """Up to `limit` enabled sources due at `now` (longest overdue first), leased until
    `lease`. Commit to hand them over; sources other claims hold are skipped, not waited for."""
    rows = session.execute(_CLAIM, {"now": now, "lease": lease, "limit": limit})
    return [ClaimedSource(row.id, row.url) for row in rows]


def leased_snapshots(session: Session, ids: list[int], lease: datetime) -> list[SourceSnapshot]:
    """The sources of a batch still leased to it (not polled since, not claimed again)."""
    if not ids:
        return []
    query = (
        select(Source)
        .where(col(Source.id).in_(ids), col(Source.enabled), Source.next_fetch_at == lease)
        .order_by(col(Source.id))
    )
    return [SourceSnapshot.of(source) for source in session.exec(query)]


_RELEASE = text(
    "UPDATE sources SET next_fetch_at = :now WHERE id IN :ids AND next_fetch_at = :lease"
).bindparams(
    bindparam("ids", expanding=True),
    bindparam("now", type_=UTCDateTime()),
    bindparam("lease", type_=UTCDateTime()),
)


def release_claims(session: Session, ids: list[int], lease: datetime, now: datetime) -> int:
    """Give back sources a batch holds (its job could not be queued): due again at `now`."""
    if not ids:
        return 0
    result = session.execute(_RELEASE, {"ids": ids, "lease": lease, "now": now})
    return int(result.rowcount)  # type: ignore[attr-defined]


_DUE = text(
    "SELECT count(*) FROM sources"
    " WHERE enabled AND (next_fetch_at <= :now OR next_fetch_at IS NULL)"
).bindparams(bindparam("now", type_=UTCDateTime()))


def due_source_count(session: Session, now: datetime) -> int:
    return int(session.execute(_DUE, {"now": now}).scalar_one())


def notify_articles_stored(session: Session) -> None:
    """Tell the grouper (LISTEN newswatch_articles) that articles were stored."""
    notify(session, ARTICLES_CHANNEL)


def set_next_fetch(session: Session, source_id: int, when: datetime) -> None:
    """When a source is due next (a cron source's schedule, after its poll)."""
    source = session.get(Source, source_id)
    if source is not None:
        source.next_fetch_at = when
