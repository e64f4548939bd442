"""What the rule feeds (/feeds/rules/NAME.atom) read: the events a rule notified about."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session, col

from newswatch.store.alert_models import AlertState
from newswatch.store.columns import as_utc


def notified_events(session: Session, rule: str, limit: int) -> dict[int, datetime]:
    """Event id -> when `rule` last notified about it, the newest `limit` first."""
    rows = session.execute(
        select(col(AlertState.event_id), col(AlertState.last_at))
        .where(col(AlertState.rule) == rule, col(AlertState.status) == "notified")
        .order_by(col(AlertState.last_at).desc())
        .limit(limit)
    ).all()
    return {event_id: as_utc(at) for event_id, at in rows}
