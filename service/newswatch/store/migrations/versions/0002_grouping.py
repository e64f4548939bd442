"""grouping: events, how each article was grouped, its fingerprint; the event_overview view

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import newswatch.store.columns

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC_TS = newswatch.store.columns.UTCDateTime

# Open events with their counts, one row each: the view users start their SQL from.
EVENT_OVERVIEW = """
CREATE VIEW event_overview AS
SELECT e.id, e.title, e.first_seen, e.last_seen, e.article_count, e.source_count,
       (SELECT COUNT(*) FROM articles a
         WHERE a.event_id = e.id AND a.duplicate_of IS NOT NULL) AS duplicate_count,
       (SELECT COUNT(*) FROM events m WHERE m.merged_into = e.id) AS merged_count,
       e.top_entities, e.revision, e.updated_at
FROM events e
WHERE e.merged_into IS NULL
"""


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("first_seen", UTC_TS(), nullable=False),
        sa.Column("last_seen", UTC_TS(), nullable=False),
        sa.Column("article_count", sa.Integer(), nullable=False),
        sa.Column("source_count", sa.Integer(), nullable=False),
        sa.Column("top_entities", sa.JSON(), nullable=False),
        sa.Column("merged_into", sa.Integer(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_TS(), nullable=False),
        sa.Column("updated_at", UTC_TS(), nullable=False),
        sa.ForeignKeyConstraint(["merged_into"], ["events.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_events_first_seen", "events", ["first_seen"])
    op.create_index("ix_events_last_seen", "events", ["last_seen"])
    op.create_index("ix_events_merged_into", "events", ["merged_into"])
    op.add_column("articles", sa.Column("group_stage", sa.String(length=16), nullable=True))
    op.add_column("articles", sa.Column("group_score", sa.Float(), nullable=True))
    op.add_column("articles", sa.Column("group_explain", sa.JSON(), nullable=True))
    op.add_column("articles", sa.Column("fingerprint", sa.LargeBinary(), nullable=True))
    op.execute(EVENT_OVERVIEW)


def downgrade() -> None:
    op.execute("DROP VIEW event_overview")
    for column in ("fingerprint", "group_explain", "group_score", "group_stage"):
        with op.batch_alter_table("articles") as batch:
            batch.drop_column(column)
    op.drop_index("ix_events_merged_into", table_name="events")
    op.drop_index("ix_events_last_seen", table_name="events")
    op.drop_index("ix_events_first_seen", table_name="events")
    op.drop_table("events")
