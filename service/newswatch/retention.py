"""Retention: the fetch log, remembered page URLs and delivered notifications do not grow
forever.

A service polling 2,000 feeds every five minutes writes more than half a million fetch-log
rows a day. `prune` deletes, in short transactions so ingest is never held up for long:
- fetch-log rows (`fetches`) older than NEWSWATCH_RETAIN_FETCHES_DAYS;
- remembered page URLs (`page_urls`) older than NEWSWATCH_RETAIN_PAGE_URLS_DAYS: a URL that
  became an article stays known through `articles` and is never fetched again; one that gave no
  article (no text, 4xx) may be tried once more after that time;
- notifications that were sent or are dead (`notifications`) older than
  NEWSWATCH_RETAIN_DELIVERIES_DAYS; pending ones are never deleted.
Articles, events, sightings and rule matches are the archive and are kept. A setting of 0 keeps
that table forever. `newswatch run` prunes once a day; `newswatch db prune` does it now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, delete, func, select

from newswatch.alerts.models import Notification
from newswatch.config import Settings
from newswatch.fetch.seen import PageURL
from newswatch.log import get_logger
from newswatch.metrics import PRUNED_ROWS
from newswatch.store.columns import utcnow
from newswatch.store.db import session_scope
from newswatch.store.models import Fetch, Source, table_of

log = get_logger(__name__)

# Rows deleted per transaction: SQLite has one writer, and ingest waits while we hold it.
CHUNK = 5_000

FETCHES = table_of(Fetch)
PAGE_URLS = table_of(PageURL)
NOTIFICATIONS = table_of(Notification)
SOURCES = table_of(Source)


@dataclass
class Pruned:
    """Rows deleted (or, in a dry run, that would be) per table."""

    fetches: int = 0
    page_urls: int = 0
    notifications: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "fetches": self.fetches,
            "page_urls": self.page_urls,
            "notifications": self.notifications,
        }


def cutoffs(settings: Settings, now: datetime) -> dict[str, datetime | None]:
    """The time before which each table's rows go (None: kept forever)."""

    def before(days: float) -> datetime | None:
        return now - timedelta(days=days) if days > 0 else None

    return {
        "fetches": before(settings.retain_fetches_days),
        "page_urls": before(settings.retain_page_urls_days),
        "notifications": before(settings.retain_deliveries_days),
    }


def _old_rows(table: str, cutoff: datetime, source_id: int | None = None) -> Any:
    """A condition selecting the table's rows older than `cutoff`, through an index."""
    if table == "fetches":  # ix_fetches_source_started, one source at a time
        return (FETCHES.c.source_id == source_id) & (FETCHES.c.started_at < cutoff)
    if table == "page_urls":  # ix_page_urls_first_seen
        return PAGE_URLS.c.first_seen < cutoff
    n = NOTIFICATIONS.c  # ix_notifications_due (status, not_before)
    return n.status.in_(("sent", "dead")) & (n.not_before < cutoff)


TABLES = {"fetches": FETCHES, "page_urls": PAGE_URLS, "notifications": NOTIFICATIONS}


def _delete_chunks(engine: Engine, table: str, condition: Any, dry_run: bool) -> int:
    t = TABLES[table]
    if dry_run:
        with session_scope(engine) as session:
            query = select(func.count()).select_from(t).where(condition)
            return int(session.execute(query).scalar_one())
    total = 0
    while True:
        with session_scope(engine) as session:
            ids = select(t.c.id).where(condition).limit(CHUNK).scalar_subquery()
            result = cast("CursorResult[Any]", session.execute(delete(t).where(t.c.id.in_(ids))))
            deleted = result.rowcount or 0
        total += deleted
        if deleted < CHUNK:
            return total


def prune(
    engine: Engine, settings: Settings, *, now: datetime | None = None, dry_run: bool = False
) -> Pruned:
    """Delete what the retention settings let go; see the module's text."""
    limits = cutoffs(settings, now or utcnow())
    pruned = Pruned()
    if limits["fetches"] is not None:
        with session_scope(engine) as session:
            source_ids = list(session.execute(select(SOURCES.c.id)).scalars())
        for source_id in source_ids:
            condition = _old_rows("fetches", limits["fetches"], source_id)
            pruned.fetches += _delete_chunks(engine, "fetches", condition, dry_run)
    for table in ("page_urls", "notifications"):
        cutoff = limits[table]
        if cutoff is not None:
            count = _delete_chunks(engine, table, _old_rows(table, cutoff), dry_run)
            setattr(pruned, table, count)
    if not dry_run:
        for table, count in pruned.as_dict().items():
            PRUNED_ROWS.labels(table).inc(count)
        log.info("pruned", **pruned.as_dict())
    return pruned
