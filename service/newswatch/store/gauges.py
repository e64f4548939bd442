"""Counts the service's gauges show (/metrics, the scheduler's error gauge): read at scrape
or resync time, never kept."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from newswatch.store.models import Fetch, Source


def sources_in_error(session: Session) -> int:
    """Sources whose last fetch failed (one or more errors in a row)."""
    query = select(func.count()).select_from(Source).where(Source.consecutive_errors > 0)
    return int(session.exec(query).one())


def sources_by_state(session: Session) -> dict[str, int]:
    """How many sources are enabled and disabled."""
    rows = session.exec(select(Source.enabled, func.count()).group_by(col(Source.enabled))).all()
    counts = {bool(enabled): int(n) for enabled, n in rows}
    return {"enabled": counts.get(True, 0), "disabled": counts.get(False, 0)}


def fetch_outcome_share(session: Session, outcome: str, since: datetime) -> float:
    """The share of the fetches started since `since` that ended with `outcome` (0 when
    there were none)."""
    total, matching = session.exec(
        select(func.count(), func.count().filter(col(Fetch.outcome) == outcome)).where(
            Fetch.started_at >= since
        )
    ).one()
    return matching / total if total else 0.0
