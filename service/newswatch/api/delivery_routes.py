"""/api/deliveries: the outbox, read-only (the same listing as `newswatch deliveries list`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from newswatch.api.params import DEFAULT_LIMIT, Cursor, cap_limit
from newswatch.api.routes import CursorParam, Id, Limit, SessionDep, not_found
from newswatch.api.routes import router as api_router
from newswatch.api.schemas import Page
from newswatch.store import outbox
from newswatch.store.alert_models import Notification

api = APIRouter(
    prefix=api_router.prefix, dependencies=api_router.dependencies, responses=api_router.responses
)

Status = Literal["pending", "sending", "sent", "dead"]


class DeliveryOut(BaseModel):
    id: int
    rule: str
    channel: str
    event_id: int
    revision: int
    status: Status
    attempts: int = Field(description="sends tried so far")
    not_before: datetime = Field(description="not sent before this time (retries, digests)")
    created_at: datetime
    sent_at: datetime | None = None
    retry_until: datetime | None = Field(
        None, description="retries stop after this time (set at the first failure)"
    )
    response_status: int | None = Field(None, description="the receiver's last HTTP/SMTP code")
    last_error: str | None = None
    batch_key: str | None = Field(None, description="rows sharing it go out as one message")
    idempotency_key: str = Field(description="rule:event:revision, sent to the receiver")


class DeliveryPage(Page):
    items: list[DeliveryOut]


@api.get("/deliveries", response_model=DeliveryPage, tags=["alerts"])
def deliveries(
    session: SessionDep,
    failed: Annotated[
        bool, Query(description="only dead notifications and those waiting for a retry")
    ] = False,
    status: Annotated[Status | None, Query(description="only notifications in this state")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> DeliveryPage:
    """Notifications to the alert channels and what became of them, newest first."""
    size = cap_limit(limit)
    after = Cursor.decode(cursor)
    rows = outbox.list_deliveries(
        session,
        failed=failed,
        status=status,
        limit=size + 1,
        before_id=after.id if after else None,
    )
    items = [DeliveryOut.model_validate(outbox.delivery_dict(n)) for n in rows[:size]]
    next_cursor = None
    if len(rows) > size:
        last = rows[size - 1]
        next_cursor = Cursor(last.created_at, last.id or 0).encode()
    return DeliveryPage(items=items, limit=size, next_cursor=next_cursor)


@api.get("/deliveries/{notification_id}", response_model=DeliveryOut, tags=["alerts"])
def delivery(session: SessionDep, notification_id: Id) -> DeliveryOut:
    """One notification's delivery record."""
    found = session.get(Notification, notification_id)
    if found is None:
        raise not_found("notification", notification_id)
    return DeliveryOut.model_validate(outbox.delivery_dict(found))
