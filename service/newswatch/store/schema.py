"""The complete metadata: importing this module registers every table of every stage.

Alembic compares migrations against this; tests check that they agree.
"""

from __future__ import annotations

from sqlmodel import SQLModel

# Each stage's tables: rule_matches, alert_state, silences, notifications; then the
# foundation's sources, fetches, articles, sightings and the grouping's events.
import newswatch.alerts.models
import newswatch.fetch.seen  # page_urls: article URLs already fetched by page sources
import newswatch.store.event_triage  # event_triage: acknowledged, starred, muted events
import newswatch.store.models  # noqa: F401  (sources, fetches, articles, sightings, events)

metadata = SQLModel.metadata
