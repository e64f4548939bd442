"""/metrics: the registry of newswatch.metrics, with store-derived gauges set at scrape time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine
from sqlmodel import Session

from newswatch.fetch.http import NOT_MODIFIED
from newswatch.log import get_logger
from newswatch.metrics import (
    DEAD_LETTERS,
    NOT_MODIFIED_SHARE,
    OUTBOX_DEPTH,
    OUTBOX_OLDEST_AGE,
    REGISTRY,
    SOURCES_IN_ERROR,
    SOURCES_TOTAL,
)
from newswatch.store.gauges import fetch_outcome_share, sources_by_state, sources_in_error
from newswatch.store.outbox import dead_letter_count, outbox_stats

log = get_logger(__name__)

NOT_MODIFIED_WINDOW = timedelta(hours=1)


def refresh_store_gauges(session: Session) -> None:
    """Set the gauges that describe the store rather than events in this process."""
    SOURCES_IN_ERROR.set(sources_in_error(session))
    for state, count in sources_by_state(session).items():
        SOURCES_TOTAL.labels(state).set(count)
    since = datetime.now(UTC) - NOT_MODIFIED_WINDOW
    NOT_MODIFIED_SHARE.set(fetch_outcome_share(session, NOT_MODIFIED, since))
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
