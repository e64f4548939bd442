"""The complete metadata: importing this module registers every table of every stage.

Alembic compares migrations against this; tests check that they agree.
"""

from __future__ import annotations

from sqlmodel import SQLModel

import newswatch.store.models  # noqa: F401  (sources, fetches, articles, sightings)

metadata = SQLModel.metadata
