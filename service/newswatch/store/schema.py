"""The complete metadata: importing this module registers every table of every stage.

Alembic compares migrations against this; tests check that they agree.
"""

from __future__ import annotations

from sqlmodel import SQLModel

# Every table: page_urls (article URLs already fetched by page sources); the alerts'
# rule_matches, alert_state, silences, notifications; then the foundation's sources,
# fetches, articles, sightings and the grouping's events.
import newswatch.fetch.seen
import newswatch.store.alert_models
import newswatch.store.models  # noqa: F401

metadata = SQLModel.metadata
