"""grouper lease: the scaled mode's grouping lock's fencing token and batch log

Revision ID: 0013
Revises: 0012

`newswatch run --role group` (Postgres): one grouper at a time holds an advisory lock; the
lease row's epoch fences a deposed one, and the batch log lets standbys replay the leader's
grouping in order (docs/decisions/0166, 0167); fetch workers queue the sightings of
known articles for the grouper to count.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import newswatch.store.columns

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    when = newswatch.store.columns.UTCDateTime
    op.create_table(
        "grouper_lease",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("heartbeat_at", when(), nullable=False),
        sa.Column("origin_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "grouper_batches",
        # BIGSERIAL on Postgres (the only store the scaled mode runs on).
        sa.Column("seq", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("article_ids", sa.JSON(), nullable=False),
        sa.Column("origin", sa.JSON(), nullable=True),
        sa.Column("created_at", when(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_table(
        "late_sightings",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("article_id", sa.BigInteger(), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("late_sightings")
    op.drop_table("grouper_batches")
    op.drop_table("grouper_lease")
