"""What the delivery worker (alerts/delivery.py) reads and writes in the outbox: claiming
due rows, recording outcomes, putting back rows whose claim expired."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Row, select, update
from sqlmodel import Session

from newswatch.store.alert_models import Notification
from newswatch.store.models import table_of

TABLE = table_of(Notification)
N = TABLE.c


def release_expired_claims(session: Session, claimed_before: datetime) -> int:
    """Rows claimed (being sent) before `claimed_before` go back to pending; how many."""
    result = cast(
        "CursorResult[Any]",
        session.execute(
            update(TABLE)
            .where(N.status == "sending", N.claimed_at < claimed_before)
            .values(status="pending", claimed_at=None)
        ),
    )
    return result.rowcount or 0


def claim_due(session: Session, now: datetime, limit: int) -> list[Row[Any]]:
    """Up to `limit` pending rows due at `now`, oldest due first, marked as being sent
    (on Postgres, rows another worker is claiming are skipped): id, channel, batch_key,
    payload, attempts, retry_until."""
    query = (
        select(N.id, N.channel, N.batch_key, N.payload, N.attempts, N.retry_until)
        .where(N.status == "pending", N.not_before <= now)
        .order_by(N.not_before, N.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = list(session.execute(query).all())
    if rows:
        session.execute(
            update(TABLE)
            .where(N.id.in_([r.id for r in rows]))
            .values(status="sending", claimed_at=now)
        )
    return rows


def record_outcome(session: Session, ids: list[int], values: dict[str, Any]) -> None:
    """Set `values` (status, attempts, ...) on the rows `ids`."""
    session.execute(update(TABLE).where(N.id.in_(ids)).values(**values))


def retry_due_by(session: Session, limit: datetime) -> bool:
    """Whether a row waiting for a retry becomes due by `limit`."""
    query = select(N.id).where(N.status == "pending", N.not_before <= limit, N.attempts > 0)
    return session.execute(query).first() is not None


def pending_counts(session: Session) -> dict[str, int]:
    """Pending rows: "retry" (failed before) and "deferred" (never attempted)."""
    out: dict[str, int] = defaultdict(int)
    for attempts in session.execute(select(N.attempts).where(N.status == "pending")).scalars():
        out["retry" if attempts else "deferred"] += 1
    return out
