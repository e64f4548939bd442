"""/metrics: the registry of newswatch.metrics, with store-derived gauges set at scrape time.

Under `newswatch run` the API answers from a process of its own (api/process.py): the
ingestion metrics live in the service's process, which sends its exposition at each scrape;
the API process adds what it owns (the store gauges it just computed, its own counters).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine
from sqlmodel import Session

from newswatch.log import get_logger
from newswatch.prometheus_registry import (
    API_REJECTED,
    DEAD_LETTERS,
    GROUPER_HEARTBEAT_AGE,
    GROUPER_LEADER,
    GROUPING_LAG_ARTICLES,
    GROUPING_LAG_SECONDS,
    NOT_MODIFIED_SHARE,
    OUTBOX_DEPTH,
    OUTBOX_OLDEST_AGE,
    QUEUE_JOBS,
    REGISTRY,
    SOURCES_DUE,
    SOURCES_IN_ERROR,
    SOURCES_TOTAL,
)
from newswatch.shared_types import FetchOutcome
from newswatch.store.claims import due_source_count
from newswatch.store.gauges import fetch_outcome_share, sources_by_state, sources_in_error
from newswatch.store.grouper_lease import grouping_backlog, read_lease
from newswatch.store.job_queue import QUEUE_NAMES, queue_depth
from newswatch.store.outbox import dead_letter_count, outbox_stats

log = get_logger(__name__)

NOT_MODIFIED_WINDOW = timedelta(hours=1)


def refresh_store_gauges(session: Session) -> None:
    """Set the gauges that describe the store rather than events in this process."""
    SOURCES_IN_ERROR.set(sources_in_error(session))
    for state, count in sources_by_state(session).items():
        SOURCES_TOTAL.labels(state).set(count)
    since = datetime.now(UTC) - NOT_MODIFIED_WINDOW
    NOT_MODIFIED_SHARE.set(fetch_outcome_share(session, FetchOutcome.NOT_MODIFIED, since))
    depth, oldest = outbox_stats(session)
    OUTBOX_DEPTH.set(depth)
    OUTBOX_OLDEST_AGE.set((datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0)
    DEAD_LETTERS.set(dead_letter_count(session))
    _refresh_queue_gauges(session)
    refresh_grouper_gauges(session)


def _refresh_queue_gauges(session: Session) -> None:
    """The scaled mode's queue (docs/decisions/0161): jobs waiting and running per queue,
    and the sources due but not claimed yet. Not shown for a store without the queue."""
    depth = queue_depth(session)
    if depth is None:
        return
    for queue in {q for q, _s in depth} | QUEUE_NAMES:
        for status in ("todo", "doing"):
            QUEUE_JOBS.labels(queue, status).set(depth.get((queue, status), 0))
    SOURCES_DUE.set(due_source_count(session, datetime.now(UTC)))


def refresh_grouper_gauges(session: Session) -> None:
    """Grouping lag and the leading grouper, when a scaled grouper ever ran on this store
    (the single process groups as it stores: nothing waits; with grouping disabled every
    article would count)."""
    lease = read_lease(session)
    GROUPER_LEADER.clear()
    if lease is None:
        return
    now = datetime.now(UTC)
    waiting, oldest = grouping_backlog(session)
    GROUPING_LAG_ARTICLES.set(waiting)
    GROUPING_LAG_SECONDS.set(max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
    GROUPER_LEADER.labels(lease.holder).set(lease.epoch)
    GROUPER_HEARTBEAT_AGE.set(max(0.0, (now - lease.heartbeat_at).total_seconds()))


# What the API's process knows better than the service's: computed at each scrape from the
# store, or counted by the API itself. Everything else comes from the service's process.
API_OWNED = (
    API_REJECTED,
    SOURCES_IN_ERROR,
    SOURCES_TOTAL,
    NOT_MODIFIED_SHARE,
    OUTBOX_DEPTH,
    OUTBOX_OLDEST_AGE,
    DEAD_LETTERS,
    QUEUE_JOBS,
    SOURCES_DUE,
    GROUPING_LAG_SECONDS,
    GROUPING_LAG_ARTICLES,
    GROUPER_LEADER,
    GROUPER_HEARTBEAT_AGE,
)


def render_metrics(
    engine: Engine, service_metrics: Callable[[], bytes] | None = None
) -> tuple[bytes, str]:
    """The exposition text; a store that fails leaves the last gauge values in place.
    `service_metrics` gives the service's own exposition when the API runs apart from it;
    OSError when it does not answer."""
    try:
        with Session(engine) as session:
            refresh_store_gauges(session)
    except Exception:
        log.exception("could not compute store gauges")
    own = generate_latest(REGISTRY)
    if service_metrics is None:
        return own, CONTENT_TYPE_LATEST
    return merge_expositions(service_metrics(), own, owned_names()), CONTENT_TYPE_LATEST


def owned_names() -> set[str]:
    """The family names of API_OWNED as the text shows them (a counter's `_total` and
    `_created` families included)."""
    bases = {family.name for metric in API_OWNED for family in metric.describe()}
    return {base + suffix for base in bases for suffix in ("", "_total", "_created")}


def merge_expositions(service: bytes, api: bytes, owned: set[str]) -> bytes:
    """The service's metric families, those in `owned` taken from the API's text instead."""
    api_families = dict(_families(api))
    merged = [
        api_families.get(name, b"") if name in owned else block
        for name, block in _families(service)
    ]
    return b"".join(merged)


def _families(text: bytes) -> list[tuple[str, bytes]]:
    """(name, its HELP, TYPE and sample lines) for each family, in order: prometheus_client
    starts every family with its `# HELP` line."""
    families: list[tuple[str, bytes]] = []
    for block in text.split(b"# HELP ")[1:]:
        name = block.split(b" ", 1)[0].decode()
        families.append((name, b"# HELP " + block))
    return families
