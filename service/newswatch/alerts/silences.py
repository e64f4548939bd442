"""Silences: no notifications for a rule (or every rule) until they expire.

A silenced (rule, event) is still decided and recorded (alert_state.status = "silenced"), so
what was suppressed stays visible; nothing is queued for it. The CLI (`newswatch silence`)
and the alerts stage share these functions; the statements are in store/alerts.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session

from newswatch.store import alerts as store
from newswatch.store.alert_models import Silence
from newswatch.store.columns import utcnow


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
    return store.insert_silence(session, rule, (now or utcnow()) + length, reason)


def list_silences(
    session: Session, *, expired: bool = False, now: datetime | None = None
) -> list[Silence]:
    """Silences in force (and expired ones too with `expired`), soonest to end first."""
    return store.silences(session, expired=expired, now=now or utcnow())


def remove_silence(session: Session, silence_id: int) -> bool:
    """End a silence now (the row is deleted); False when there is none with that id."""
    return store.delete_silence(session, silence_id)


def silenced(session: Session, rule: str, now: datetime) -> bool:
    """Whether a silence in force covers `rule`."""
    return store.silence_covers(session, rule, now)


def suppressed_counts(session: Session) -> dict[str, int]:
    """Per rule: events decided while silenced and not notified since."""
    return store.suppressed_counts(session)
