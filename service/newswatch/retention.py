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
from typing import get_args

from sqlalchemy import Engine

from newswatch.config import Settings
from newswatch.log import get_logger
from newswatch.prometheus_registry import PRUNED_ROWS
from newswatch.store.columns import utcnow
from newswatch.store.db import session_scope
from newswatch.store.pruning import PrunedTable, count_old_rows, delete_old_rows, source_ids

log = get_logger(__name__)

# Rows deleted per transaction: SQLite has one writer, and ingest waits while we hold it.
CHUNK = 5_000


@dataclass
class Pruned:
    """Rows deleted (or, in a dry run, that would be) per table."""

    fetches: int = 0
    page_urls: int = 0
    notifications: int = 0

    def as_dict(self) -> dict[str, int]:
        return {table: getattr(self, table) for table in get_args(PrunedTable)}


def cutoffs(settings: Settings, now: datetime) -> dict[PrunedTable, datetime | None]:
    """The time before which each table's rows go (None: kept forever)."""

    def before(days: float) -> datetime | None:
        return now - timedelta(days=days) if days > 0 else None

    return {
        "fetches": before(settings.retain_fetches_days),
        "page_urls": before(settings.retain_page_urls_days),
        "notifications": before(settings.retain_deliveries_days),
    }


def _prune_table(
    engine: Engine,
    table: PrunedTable,
    cutoff: datetime,
    dry_run: bool,
    source_id: int | None = None,
) -> int:
    """The table's rows older than `cutoff` deleted, CHUNK rows a transaction; how many."""
    if dry_run:
        with session_scope(engine) as session:
            return count_old_rows(session, table, cutoff, source_id)
    total = 0
    while True:
        with session_scope(engine) as session:
            deleted = delete_old_rows(session, table, cutoff, CHUNK, source_id)
        total += deleted
        if deleted < CHUNK:
            return total


def prune(
    engine: Engine, settings: Settings, *, now: datetime | None = None, dry_run: bool = False
) -> Pruned:
    """Delete what the retention settings let go; see the module's text."""
    limits = cutoffs(settings, now or utcnow())
    pruned = Pruned()
    fetches_cutoff = limits["fetches"]
    if fetches_cutoff is not None:
        with session_scope(engine) as session:
            sources = source_ids(session)
        for source_id in sources:
            pruned.fetches += _prune_table(engine, "fetches", fetches_cutoff, dry_run, source_id)
    for table in ("page_urls", "notifications"):
        cutoff = limits[table]
        if cutoff is not None:
            setattr(pruned, table, _prune_table(engine, table, cutoff, dry_run))
    if not dry_run:
        for table, count in pruned.as_dict().items():
            PRUNED_ROWS.labels(table).inc(count)
        log.info("pruned", **pruned.as_dict())
    return pruned
