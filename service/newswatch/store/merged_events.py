"""What a merge of two events does to the alert rows of the absorbed one: its notification
state and its outbox rows (the alerts stage decides; these are its queries)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Row, delete, select, update
from sqlmodel import Session, col

from newswatch.alerts.models import AlertState, Notification, RuleMatch
from newswatch.store.models import table_of

N = table_of(Notification).c
M = table_of(RuleMatch).c


def merge_alert_states(session: Session, gone: int, keep: int) -> None:
    """The absorbed event's (rule, event) states belong to the survivor. Where both have
    one, the further one wins (more revisions sent: a story notified under either id stays
    notified), keeping the earlier first decision."""
    states = session.execute(
        select(AlertState).where(col(AlertState.event_id).in_((gone, keep)))
    ).scalars()
    by_rule: dict[str, dict[int, AlertState]] = {}
    for state in states:
        by_rule.setdefault(state.rule, {})[state.event_id] = state
    for pair in by_rule.values():
        old, kept = pair.get(gone), pair.get(keep)
        if old is None:
            continue
        if kept is None:
            old.event_id = keep  # a primary-key change: the ORM updates the row in place
            continue
        if old.revision > kept.revision:
            kept.revision, kept.status = old.revision, old.status
            kept.sources_notified, kept.last_at = old.sources_notified, old.last_at
        kept.first_at = min(kept.first_at, old.first_at)
        session.delete(old)
    session.flush()


def notifications_of(session: Session, event_ids: Iterable[int]) -> Sequence[Row[Any]]:
    """Every outbox row of the events: id, rule, channel, event_id, revision, status,
    attempts, not_before, in id order."""
    return session.execute(
        select(N.id, N.rule, N.channel, N.event_id, N.revision, N.status, N.attempts, N.not_before)
        .where(N.event_id.in_(list(event_ids)))
        .order_by(N.id)
    ).all()


def drop_notifications(session: Session, ids: Sequence[int]) -> None:
    """Remove outbox rows never attempted whose news another notification carries."""
    if ids:
        session.execute(
            delete(Notification).where(N.id.in_(ids), N.attempts == 0, N.status == "pending")
        )


def rewrite_notification(
    session: Session,
    notification_id: int,
    event_id: int,
    key: str,
    payload: dict[str, Any] | None = None,
) -> None:
    """A waiting outbox row now about `event_id` under idempotency key `key`, saying
    `payload` (its payload unchanged when None). A row a delivery worker claimed meanwhile
    is left as it is being sent."""
    values: dict[str, Any] = {"event_id": event_id, "idempotency_key": key}
    if payload is not None:
        values["payload"] = {**payload, "idempotency_key": key}
    session.execute(
        update(Notification)
        .where(N.id == notification_id, N.attempts == 0, N.status == "pending")
        .values(**values)
    )


def matches_of(session: Session, rule: str, event_id: int) -> Sequence[Row[Any]]:
    """The rule's matches in the event: article_id, source_id, at, terms."""
    return session.execute(
        select(M.article_id, M.source_id, M.at, M.terms).where(
            M.rule == rule, M.event_id == event_id
        )
    ).all()
