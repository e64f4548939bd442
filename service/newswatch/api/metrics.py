"""/metrics: the registry of newswatch.metrics, with store-derived gauges set at scrape time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from newswatch.fetch.http import NOT_MODIFIED
from newswatch.log import get_logger
from newswatch.prometheus_registry import (
    DEAD_LETTERS,
    NOT_MODIFIED_SHARE,
    OUTBOX_DEPTH,
    OUTBOX_OLDEST_AGE,
    REGISTRY,
    SOURCES_IN_ERROR,
    SOURCES_TOTAL,
)
from newswatch.store.models import Fetch, Source
from newswatch.store.outbox import dead_letter_count, outbox_stats

log = get_logger(__name__)

NOT_MODIFIED_WINDOW = timedelta(hours=1)


def refresh_store_gauges(session: Session) -> None:
    """Set the gauges that describe the store rather than events in this process."""
    in_error = session.exec(
        select(func.count()).select_from(Source).where(Source.consecutive_errors > 0)
    ).one()
    SOURCES_IN_ERROR.set(in_error)
    by_state = dict(
        session.exec(select(Source.enabled, func.count()).group_by(col(Source.enabled))).all()
    )
    SOURCES_TOTAL.labels("enabled").set(by_state.get(True, 0))
    SOURCES_TOTAL.labels("disabled").set(by_state.get(False, 0))
    since = datetime.now(UTC) - NOT_MODIFIED_WINDOW
    total, not_modified = session.exec(
        select(func.count(), func.count().filter(col(Fetch.outcome) == NOT_MODIFIED)).where(
            Fetch.started_at >= since
        )
    ).one()
    NOT_MODIFIED_SHARE.set(not_modified / total if total else 0.0)
    depth, oldest = outbox_stats(session)
    OUTBOX_DEPTH.set(depth)
    OUTBOX_OLDEST_AGE.set((datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0)
    DEAD_LETTERS.set(dead_letter_count(session))


def render_metrics(engine: Engine) -> tuple[bytes, str]:
    """The exposition text; a store that fails leaves the last gauge values in place."""
    try:
        with Session(engine) as session:
            refresh_store_gauges(session)
    except Exception:
        log.exception("could not compute store gauges")
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
