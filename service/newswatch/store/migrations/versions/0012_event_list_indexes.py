"""event list indexes: open events by last_seen and by source_count, sightings by first_seen

Revision ID: 0012
Revises: 0011

The events list (`/api/events`, the live page) sorted every open event before taking a page;
these indexes hand them over in order, and find the last hour's sightings for the growth
sort without scanning them all (docs/decisions/0201).
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_events_open_last_seen", "events", ["merged_into", "last_seen", "id"], unique=False
    )
    op.create_index(
        "ix_events_open_size", "events", ["merged_into", "source_count", "id"], unique=False
    )
    op.create_index("ix_sightings_first_seen", "sightings", ["first_seen"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_sightings_first_seen", table_name="sightings")
    op.drop_index("ix_events_open_size", table_name="events")
    op.drop_index("ix_events_open_last_seen", table_name="events")
