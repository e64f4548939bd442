"""The complete metadata: importing this module registers every table of every stage.

Alembic compares migrations against this; tests check that they agree.
"""

from __future__ import annotations

from sqlmodel import SQLModel

# Each stage's tables: rule_matches, alert_state, silences, notifications; then the
# foundation's sources, fetches, articles, sightings and the grouping's events.
import newswatch.alerts.models
import newswatch.fetch.seen  # page_urls: article URLs already fetched by page sources
import newswatch.store.models  # noqa: F401  (sources, fetches, articles, sightings, events)

metadata = SQLModel.metadata


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """Whether Alembic compares a database object with the models: not the full-text
    search's tables (migration 0010), which differ by engine (an FTS5 virtual table and its
    shadow tables on SQLite) and which only store/search.py reads and writes."""
    return not (type_ == "table" and name is not None and name.startswith("article_search"))
