"""Where a scaled-mode fetch worker hands its entries: stored, not grouped, not alerted.

The single-process pipeline stores, groups and alerts in one transaction (pipeline.py). In
the scaled mode (docs/decisions/0161) fetch workers run beside each other and one grouper
groups after them, so a fetch worker stores articles and sightings exactly as the pipeline
does but leaves `event_id` and `group_stage` empty, skips an article another worker stored
meanwhile (ON CONFLICT DO NOTHING; it becomes a sighting of that one), and NOTIFYs
`newswatch_articles` in each transaction that stored articles, for the grouper to wake.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlmodel import Session

from newswatch.config import FileConfig, Settings
from newswatch.fetch.language import language_of
from newswatch.grouping.changes import EventChange
from newswatch.pipeline import Pipeline
from newswatch.shared_types import ParsedEntry
from newswatch.store.articles import StoredArticle, store_batch
from newswatch.store.claims import notify_articles_stored
from newswatch.store.grouper_lease import join_article_writers, queue_late_sightings
from newswatch.store.models import Source

if TYPE_CHECKING:
    from newswatch.grouping.stage import EventGrouper


class StoringSink(Pipeline):
    """The pipeline's EntrySink without its grouping and alert stages."""

    def __init__(self, engine: Engine, config: FileConfig, settings: Settings):
        super().__init__(engine, config, settings, alerts=False)

    @property
    def grouper(self) -> EventGrouper | None:
        """None: the grouper role groups (docs/decisions/0161), so a fetch worker neither
        builds the grouping stage nor restores its window."""
        return None

    def store_entries(
        self, session: Session, items: list[tuple[Source, ParsedEntry]]
    ) -> tuple[list[StoredArticle], list[EventChange]]:
        """Store only (ON CONFLICT DO NOTHING beside the other workers); no changes: the
        grouper groups and alerts. Admission, the jobs' results and the stored-articles
        count are the pipeline's (Pipeline.ingest_jobs)."""
        # Among the article writers before taking article ids: the grouper takes articles
        # in id order and waits for the writers it saw (docs/decisions/0211).
        join_article_writers(session)
        stored = store_batch(session, items, language_of=language_of, concurrent=True)
        # Articles stored before and now seen at one more source: their events may have one
        # more source, which the grouper counts (single process: pipeline.py does it inline).
        queue_late_sightings(
            session,
            [
                (a.id, a.source_id)
                for a in stored
                if not a.is_new and a.new_sighting and a.source_id is not None
            ],
        )
        if any(a.is_new for a in stored):
            notify_articles_stored(session)
        return stored, []
