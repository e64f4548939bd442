"""The one place that chains the stages: entries -> articles -> events -> alerts.

Everything an entry causes (the article, its sighting, its event, the notifications it
triggers, the fetch log and the source's new state) is written in one transaction, so a crash
loses all of it or none of it: an ETag is never saved for articles that were not.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlmodel import Session

from newswatch.config import FileConfig, Settings
from newswatch.errors import NotFound
from newswatch.fetch.entry_sink import AfterIngest, IngestResult
from newswatch.fetch.language import language_of
from newswatch.grouping.changes import EventChange
from newswatch.lifecycle import collector_paused
from newswatch.prometheus_registry import ARTICLES_STORED, DUPLICATES_DROPPED, NEAR_DUPLICATES
from newswatch.shared_types import ParsedEntry
from newswatch.store.articles import (
    RejectedEntry,
    StoredArticle,
    admit_entries,
    store_batch,
    unstored_entries,
)
from newswatch.store.db import session_scope
from newswatch.store.models import Source
from newswatch.store.sources import sources_by_id

if TYPE_CHECKING:
    # Imported when used (the grouping stage and numpy at the first write of new entries,
    # the alert stage when there are rules): a run that stores nothing never loads them
    # (docs/decisions/0185-lazy-start-up.md).
    from newswatch.alerts.stage import AlertStage
    from newswatch.grouping.stage import EventGrouper, Placement


def _newest_first(entry: ParsedEntry) -> tuple[bool, float]:
    """Sort key: dated entries newest first, then undated ones (in their feed order)."""
    published: datetime | None = entry.published
    return (published is None, -published.timestamp() if published is not None else 0.0)


class Pipeline:
    def __init__(
        self, engine: Engine, config: FileConfig, settings: Settings, *, alerts: bool = True
    ):
        self.engine = engine
        self.config = config
        self.settings = settings
        # Grouping keeps its indexes in memory, rebuilt from the store's last time window
        # when the first new entries come (restored_grouper), not here: start-up and the
        # first fetches do not wait for it, and a run that stores nothing never pays for it
        # (docs/decisions/0182-grouping-window-restored-on-first-write.md).
        self._grouper: EventGrouper | None = None
        self._grouper_restored = False
        # Alerts: rules matched inside the ingest transaction, notifications into the outbox.
        self.alert_engine: AlertStage | None = None
        if alerts and config.rules:
            from newswatch.alerts.stage import AlertStage

            self.alert_engine = AlertStage(config.rules, config.channels, settings)
        # Called after a commit that queued notifications (the delivery worker's wake-up).
        self.on_enqueued: list[Callable[[], None]] = []

    def entries_for_poll(
        self, source_id: int, entries: list[ParsedEntry], cap: int
    ) -> tuple[list[ParsedEntry], int]:
        """What a poll of source `source_id` writes of `entries`, and how many entries wait for
        later polls: all of them when they are at most `cap`; else the newest `cap` that the
        source has not carried yet (and those the store rejects, to report them again).
        A huge feed is so stored over several polls, each in bounded time and memory."""
        if len(entries) <= cap:
            return entries, 0
        admitted, rejected = admit_entries(entries)
        with session_scope(self.engine) as session:
            source = session.get(Source, source_id)
            if source is None:
                raise NotFound(f"no source with id {source_id}", where="pipeline")
            todo = [admitted[i] for i in unstored_entries(session, source, admitted)]
        todo.sort(key=_newest_first)
        # The newest are chosen, and written oldest first: grouping takes a stream in time.
        chosen = todo[:cap][::-1]
        return [entries[r.index] for r in rejected] + chosen, max(0, len(todo) - cap)

    def ingest(
        self, source_id: int, entries: list[ParsedEntry], after: AfterIngest | None = None
    ) -> IngestResult:
        """Store `entries` seen at source `source_id` and run them through every stage."""
        try:
            with session_scope(self.engine) as session:
                source = session.get(Source, source_id)
                if source is None:
                    raise NotFound(f"no source with id {source_id}", where="pipeline")
                result = self.ingest_in(session, source, entries)
                if after is not None:
                    after(session, source, result)
        except Exception:
            self._after_rollback()
            raise
        self._after_commit()
        return result

    def ingest_many(
        self, jobs: list[tuple[int, list[ParsedEntry], AfterIngest | None]]
    ) -> list[IngestResult | Exception]:
        """Several sources' entries in one transaction (group commit: one fsync for many
        polls). If the batch fails, each job is retried alone so one bad job fails alone."""
        # No automatic collection inside: a batch's thousands of short-lived objects
        # (entries, rows, decisions) would otherwise survive the collections that run while
        # it is processed, reach the oldest generation and trigger a full collection of the
        # whole in-memory grouping state every ~1,500 articles (a tenth of a replay's time).
        # Reference counting frees them when the batch ends; the few cycles wait for the
        # next collection.
        with collector_paused():
            return self._ingest_many(jobs)

    def _ingest_many(
        self, jobs: list[tuple[int, list[ParsedEntry], AfterIngest | None]]
    ) -> list[IngestResult | Exception]:
        if any(entries for _id, entries, _after in jobs):
            self.restored_grouper()  # before the batch's transaction, on a read of its own
        try:
            with session_scope(self.engine) as session:
                # One query loads every source of the batch into the identity map.
                sources = sources_by_id(session, [source_id for source_id, _e, _a in jobs])
                batch: list[tuple[Source, list[ParsedEntry]]] = []
                for source_id, entries, _after in jobs:
                    source = sources.get(source_id)
                    if source is None:
                        raise NotFound(f"no source with id {source_id}", where="pipeline")
                    batch.append((source, entries))
                results = self.ingest_jobs(session, batch)
                for (source, _entries), (_id, _e, after), result in zip(
                    batch, jobs, results, strict=True
                ):
                    if after is not None:
                        after(session, source, result)
            self._after_commit()
            return list(results)
        except Exception:
            if len(jobs) == 1:
                self._after_rollback()
                raise
        self._after_rollback()
        out: list[IngestResult | Exception] = []
        for source_id, entries, after in jobs:
            try:
                out.append(self.ingest(source_id, entries, after))
            except Exception as exc:
                out.append(exc)
        return out

    @property
    def grouper(self) -> EventGrouper | None:
        """The grouping stage when grouping is on (built at first use, its window empty until
        restored_grouper reads it)."""
        if self._grouper is None and self.config.grouping.enabled:
            from newswatch.grouping.stage import EventGrouper

            self._grouper = EventGrouper(self.config.grouping)
        return self._grouper

    def restored_grouper(self) -> EventGrouper | None:
        """The grouper with the store's last window restored (read once, at first need)."""
        if self.grouper is not None and not self._grouper_restored:
            with session_scope(self.engine) as session:
                self.grouper.load(session)
            self._grouper_restored = True
        return self.grouper

    def _after_commit(self) -> None:
        if self.alert_engine is not None and self.alert_engine.enqueued:
            self.alert_engine.enqueued = False
            for callback in self.on_enqueued:
                callback()

    def _after_rollback(self) -> None:
        """Stages with in-memory state (the grouper's indexes) forget what was rolled back."""
        if self.alert_engine is not None:
            self.alert_engine.enqueued = False
        if self._grouper is not None and self._grouper_restored:
            with session_scope(self.engine) as session:
                self._grouper.load(session)

    def ingest_in(
        self, session: Session, source: Source, entries: list[ParsedEntry]
    ) -> IngestResult:
        """The same as `ingest`, inside the caller's transaction."""
        return self.ingest_jobs(session, [(source, entries)])[0]

    def ingest_jobs(
        self, session: Session, jobs: list[tuple[Source, list[ParsedEntry]]]
    ) -> list[IngestResult]:
        """Entries of several sources through every stage at once, inside the caller's
        transaction: a few statements for the whole batch, in the order given."""
        admitted = [(source, *admit_entries(entries)) for source, entries in jobs]
        items = [(source, entry) for source, entries, _r in admitted for entry in entries]
        stored, changes = self.store_entries(session, items) if items else ([], [])
        results = job_results(admitted, stored)
        ARTICLES_STORED.inc(sum(1 for a in stored if a.is_new))
        if changes:
            _share_changes(results, changes)
        return results

    def store_entries(
        self, session: Session, items: list[tuple[Source, ParsedEntry]]
    ) -> tuple[list[StoredArticle], list[EventChange]]:
        """The stages after admission: store the entries (one StoredArticle each, in
        order), group the new articles and judge the alerts; the grouping's changes. (The
        scaled mode's fetch workers store only: storing_sink.py.)"""
        grouper = self.restored_grouper()
        # The grouping decides on the new articles before they are inserted (their ids
        # reserved), so each row is written once with its event columns.
        placed: list[Placement] = []

        def assign(new: list[StoredArticle]) -> list[dict[str, object]]:
            assert grouper is not None
            decisions = grouper.decide(new)
            placed.extend(decisions)
            return grouper.article_columns(decisions)

        stored = store_batch(
            session,
            items,
            assign=assign if grouper is not None else None,
            language_of=language_of,
        )
        changes: list[EventChange] = []
        if grouper is not None and stored:
            changes = grouper.finish(session, stored, placed)
            NEAR_DUPLICATES.inc(sum(1 for c in changes if c.duplicate_of is not None))
        if self.alert_engine is not None and changes:
            self.alert_engine.on_changes(session, changes)
        return stored, changes


def job_results(
    admitted: list[tuple[Source, list[ParsedEntry], list[RejectedEntry]]],
    stored: list[StoredArticle],
) -> list[IngestResult]:
    """Each job's share of a batch's stored articles (stored in the jobs' order), with the
    duplicates the batch dropped counted."""
    results: list[IngestResult] = []
    start = 0
    for _source, entries, rejected in admitted:
        results.append(IngestResult(stored=stored[start : start + len(entries)], rejected=rejected))
        start += len(entries)
    for article in stored:
        if article.duplicate_reason:
            DUPLICATES_DROPPED.labels(article.duplicate_reason).inc()
    return results


def _share_changes(results: list[IngestResult], changes: list[EventChange]) -> None:
    """Give each job the changes its own entries caused."""
    by_article: dict[int, list[EventChange]] = {}
    for change in changes:
        by_article.setdefault(change.article_id, []).append(change)
    for result in results:
        ids = dict.fromkeys(a.id for a in result.stored)
        result.changes = [c for article_id in ids for c in by_article.get(article_id, [])]
