"""ix_events_split_from: the events split off an event, found without scanning `events`

Revision ID: 0017
Revises: 0016

`events near ID` reads the near misses of the articles within the grouping window of ID's
span, and the span includes the events split off ID (decision 0180, amended). Only the few
split-off events are in the index (partial: `split_from IS NOT NULL`), so grouping's event
inserts do not write to it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

SPLIT_OFF = sa.text("split_from IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_events_split_from",
        "events",
        ["split_from"],
        unique=False,
        sqlite_where=SPLIT_OFF,
        postgresql_where=SPLIT_OFF,
    )


def downgrade() -> None:
    op.drop_index("ix_events_split_from", table_name="events")
