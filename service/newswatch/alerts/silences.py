"""Silences: no notifications for a rule (or every rule) until they expire.

A silenced (rule, event) is still decided and recorded (alert_state.status = "silenced"), so
what was suppressed stays visible; nothing is queued for it. The CLI (`newswatch silence`)
and the engine share these functions.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlmodel import Session, col

from newswatch.alerts.models import AlertState, Silence
from newswatch.store.columns import utcnow
from newswatch.store.models import table_of


def add_silence(
    session: Session,
    rule: str | None,
    length: timedelta,
    reason: str | None = None,
    now: datetime | None = None,
) -> Silence:
    """Silence `rule` (None: every rule) for `length` from now."""
    if length <= timedelta(0):
        raise ValueError("a silence must last longer than 0")
    row = Silence(rule=rule, until=(now or utcnow()) + length, reason=reason)
    session.add(row)
    session.flush()
    return row


def list_silences(
    session: Session, *, expired: bool = False, now: datetime | None = None
) -> list[Silence]:
    """Silences in force (and expired ones too with `expired`), soonest to end first."""
    query = select(Silence).order_by(col(Silence.until), col(Silence.id))
    if not expired:
        query = query.where(col(Silence.until) > (now or utcnow()))
    return list(session.execute(query).scalars())


def remove_silence(session: Session, silence_id: int) -> bool:
    """End a silence now (the row is deleted); False when there is none with that id."""
    row = session.get(Silence, silence_id)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def silenced(session: Session, rule: str, now: datetime) -> bool:
    """Whether a silence in force covers `rule`."""
    query = select(col(Silence.id)).where(
        col(Silence.until) > now,
        or_(col(Silence.rule).is_(None), col(Silence.rule) == rule),
    )
    return session.execute(query.limit(1)).first() is not None


def suppressed_counts(session: Session) -> dict[str, int]:
    """Per rule: events decided while silenced and not notified since."""
    state = table_of(AlertState).c
    rows = session.execute(
        select(state.rule, func.count()).where(state.status == "silenced").group_by(state.rule)
    )
    return {rule: int(count) for rule, count in rows}
