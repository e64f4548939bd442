"""event triage: event_triage, events acknowledged, starred or muted by people

Revision ID: 0011
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import newswatch.store.columns

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = newswatch.store.columns.UTCDateTime
    op.create_table(
        "event_triage",
        sa.Column("event_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("acknowledged_at", when(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=100), nullable=True),
        sa.Column("starred_at", when(), nullable=True),
        sa.Column("starred_by", sa.String(length=100), nullable=True),
        sa.Column("muted_at", when(), nullable=True),
        sa.Column("muted_by", sa.String(length=100), nullable=True),
        sa.Column("updated_at", when(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id"),
    )


def downgrade() -> None:
    op.drop_table("event_triage")
