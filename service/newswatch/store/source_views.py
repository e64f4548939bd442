"""The store's reads of sources for the API, the pages and the CLI: fetch counts and the
fetch log."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from newswatch.store.models import Fetch, Sighting, Source


def fetch_counts(session: Session, since: datetime) -> dict[int | None, dict[str, int]]:
    """Per source: fetches since `since` by outcome."""
    rows = session.exec(
        select(Fetch.source_id, Fetch.outcome, func.count())
        .where(col(Fetch.started_at) >= since)
        .group_by(col(Fetch.source_id), col(Fetch.outcome))
    ).all()
    counts: dict[int | None, dict[str, int]] = defaultdict(dict)
    for source_id, outcome, n in rows:
        counts[source_id][outcome] = n
    return counts


def article_counts(session: Session) -> dict[int | None, int]:
    """Per source: how many articles it carried (its sightings)."""
    rows = session.exec(
        select(Sighting.source_id, func.count()).group_by(col(Sighting.source_id))
    ).all()
    return dict(rows)


def articles_carried(session: Session, source_id: int) -> int:
    return session.exec(
        select(func.count()).select_from(Sighting).where(Sighting.source_id == source_id)
    ).one()


def sources_by_name(session: Session, *, in_error: bool | None = None) -> Sequence[Source]:
    """Every source by name; only failing (True) or only healthy (False) ones."""
    query = select(Source)
    if in_error is True:
        query = query.where(Source.consecutive_errors > 0)
    elif in_error is False:
        query = query.where(Source.consecutive_errors == 0)
    return session.exec(query.order_by(Source.name)).all()


def recent_fetches(session: Session, source_id: int, limit: int) -> Sequence[Fetch]:
    """The source's last `limit` fetches, newest first."""
    return session.exec(
        select(Fetch)
        .where(Fetch.source_id == source_id)
        .order_by(col(Fetch.started_at).desc(), col(Fetch.id).desc())
        .limit(limit)
    ).all()
