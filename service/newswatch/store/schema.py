"""The complete metadata: importing this module registers every table of every stage.

Alembic compares migrations against this; tests check that they agree.
"""

from __future__ import annotations

from sqlmodel import SQLModel

# Every table: the alerts' article_matches, alert_state, silences, notifications; then the
# foundation's sources, fetches, articles, sightings and the grouping's events; the article
# URLs page sources fetched already; people's marks on events.
import newswatch.store.alert_models
import newswatch.store.event_sources  # each source's first sighting of each event (growth)
import newswatch.store.event_triage  # event_triage: acknowledged, starred, muted events
import newswatch.store.grouper_models  # the scaled mode's grouper lease and batch log
import newswatch.store.models  # sources, fetches, articles, sightings, events
import newswatch.store.page_urls  # noqa: F401  (article URLs page sources fetched already)

metadata = SQLModel.metadata


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """Whether Alembic compares a database object with the models: not the full-text
    search's tables (migration 0010), which differ by engine (an FTS5 virtual table and its
    shadow tables on SQLite) and which only store/search.py reads and writes."""
    return not (type_ == "table" and name is not None and name.startswith("article_search"))
