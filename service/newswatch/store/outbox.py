"""The outbox: notifications recorded in the transaction that caused them.

A notification is a row before it is a message, so a crash between deciding and sending loses
nothing: the delivery worker finds the row when it starts again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlmodel import Session

from newswatch.errors import InputError
from newswatch.store.alert_models import Notification
from newswatch.store.columns import as_utc, utcnow
from newswatch.store.executemany import executemany
from newswatch.store.models import table_of
from newswatch.store.upsert import insert_ignoring_conflicts

NOTIFICATIONS = table_of(Notification)
N = NOTIFICATIONS.c


def idempotency_key(rule: str, event_id: int, revision: int) -> str:
    """The same for every send of one notification: receivers drop repeats by it."""
    return f"{rule}:{event_id}:{revision}"


def enqueue(
    session: Session,
    *,
    rule: str,
    channel: str,
    event_id: int,
    revision: int,
    payload: dict[str, Any],
    not_before: datetime | None = None,
    batch_key: str | None = None,
) -> bool:
    """Record a notification (in the caller's transaction); False if this (channel, key)
    is recorded already, so a replayed decision never queues twice."""
    now = utcnow()
    key = idempotency_key(rule, event_id, revision)
    values = {
        "rule": rule,
        "channel": channel,
        "event_id": event_id,
        "revision": revision,
        "idempotency_key": key,
        "payload": {**payload, "idempotency_key": key},
        "status": "pending",
        "attempts": 0,
        "not_before": not_before or now,
        "batch_key": batch_key,
        "created_at": now,
    }
    statement = (
        insert_ignoring_conflicts(session, NOTIFICATIONS, [N.channel, N.idempotency_key])
        .values(**values)
        .returning(N.id)
    )
    return session.execute(statement).first() is not None


def enqueue_many(session: Session, notifications: list[dict[str, Any]]) -> int:
    """Record notifications in one statement (see `enqueue`): dicts of rule, channel,
    event_id, revision, payload, not_before, batch_key. Returns how many were new."""
    if not notifications:
        return 0
    now = utcnow()
    rows = []
    # A notification to several channels shares one payload object (and key): one copy with
    # the key, which executemany then encodes once for all of them.
    keyed: dict[tuple[int, str], dict[str, Any]] = {}
    for n in notifications:
        key = idempotency_key(n["rule"], n["event_id"], n["revision"])
        if (payload := keyed.get((id(n["payload"]), key))) is None:
            payload = keyed[(id(n["payload"]), key)] = {**n["payload"], "idempotency_key": key}
        written = (n["rule"], n["channel"], n["event_id"], n["revision"], key, payload)
        rows.append((*written, "pending", 0, n["not_before"], n["batch_key"], now))
    statement = insert_ignoring_conflicts(session, NOTIFICATIONS, [N.channel, N.idempotency_key])
    return executemany(session, statement, _QUEUED, rows)


# The columns enqueue_many writes, in its rows' order.
_QUEUED = (
    "rule",
    "channel",
    "event_id",
    "revision",
    "idempotency_key",
    "payload",
    "status",
    "attempts",
    "not_before",
    "batch_key",
    "created_at",
)


def enqueue_summary(
    session: Session,
    *,
    rule: str,
    channel: str,
    key: str,
    first: Callable[[], dict[str, Any]],
    grow: Callable[[dict[str, Any]], dict[str, Any]],
    not_before: datetime,
    batch_key: str | None,
    now: datetime,
) -> bool:
    """A summary notification (alerts/cap.py), one per (channel, `key`): queued with payload
    `first()`, or, queued already and not sent yet, its payload replaced by `grow(payload)`.
    Its event_id is 0: it is about no single event. False if it went out already."""
    row = session.execute(
        select(N.id, N.payload, N.status).where(N.channel == channel, N.idempotency_key == key)
    ).first()
    if row is None:
        values = {
            "rule": rule,
            "channel": channel,
            "event_id": 0,
            "revision": 1,
            "idempotency_key": key,
            "payload": {**first(), "idempotency_key": key},
            "status": "pending",
            "attempts": 0,
            "not_before": not_before,
            "batch_key": batch_key,
            "created_at": now,
        }
        session.execute(insert(NOTIFICATIONS).values(**values))
        return True
    if row.status != "pending":
        return False
    payload = {**grow(dict(row.payload)), "idempotency_key": key}
    session.execute(update(NOTIFICATIONS).where(N.id == row.id).values(payload=payload))
    return True


def open_wait_group(
    session: Session, rule: str, channel: str, now: datetime
) -> tuple[datetime, str] | None:
    """The (send time, batch key) of the rule's group_wait group to `channel` that is still
    collecting at `now`, if one is: later matches join it instead of opening their own."""
    row = session.execute(
        select(N.not_before, N.batch_key)
        .where(
            N.rule == rule,
            N.channel == channel,
            N.status == "pending",
            N.attempts == 0,
            N.batch_key.like(f"{rule}:wait:%"),
            N.not_before > now,
        )
        .order_by(N.not_before.desc())
        .limit(1)
    ).first()
    return (as_utc(row[0]), row[1]) if row is not None else None


def outbox_stats(session: Session) -> tuple[int, datetime | None]:
    """Notifications waiting (pending or being sent) and the creation time of the oldest."""
    row = session.execute(
        select(func.count(), func.min(N.created_at)).where(N.status.in_(("pending", "sending")))
    ).one()
    return int(row[0]), as_utc(row[1]) if row[1] is not None else None


def dead_letter_count(session: Session) -> int:
    """Notifications that failed for good (dead) and wait for an operator."""
    return int(session.execute(select(func.count()).where(N.status == "dead")).scalar_one())


def failed_filter() -> Any:
    """Dead notifications and those waiting for a retry."""
    return (N.status == "dead") | ((N.status == "pending") & (N.attempts > 0))


def list_deliveries(
    session: Session,
    *,
    failed: bool = False,
    status: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[Notification]:
    """Notifications, newest first (`deliveries list` and /api/deliveries)."""
    query = select(Notification).order_by(N.id.desc()).limit(limit)
    if failed:
        query = query.where(failed_filter())
    if status is not None:
        query = query.where(N.status == status)
    if before_id is not None:
        query = query.where(N.id < before_id)
    return list(session.execute(query).scalars())


def delivery_dict(n: Notification) -> dict[str, Any]:
    """A notification's delivery record (without its payload), JSON-ready."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": n.id,
        "rule": n.rule,
        "channel": n.channel,
        "event_id": n.event_id,
        "revision": n.revision,
        "status": n.status,
        "attempts": n.attempts,
        "not_before": iso(n.not_before),
        "created_at": iso(n.created_at),
        "sent_at": iso(n.sent_at),
        "response_status": n.response_status,
        "retry_until": iso(n.retry_until),
        "last_error": n.last_error,
        "batch_key": n.batch_key,
        "idempotency_key": n.idempotency_key,
    }


class RetryError(InputError):
    """A notification that cannot be queued again (none with that id, or already sent)."""


def retry_delivery(session: Session, notification_id: int) -> None:
    """Queue a dead (or waiting) notification again, due now, with a fresh retry budget."""
    row = session.get(Notification, notification_id)
    if row is None:
        raise RetryError(f"no notification with id {notification_id}")
    if row.status in ("sent", "sending"):
        raise RetryError(f"notification {notification_id} is {row.status}")
    session.execute(
        update(NOTIFICATIONS)
        .where(N.id == notification_id)
        .values(
            status="pending",
            attempts=0,
            retry_until=None,
            not_before=utcnow() - timedelta(seconds=1),
        )
    )
