"""sources.consecutive_gone and sources.paused_reason: a source answering 410 Gone is paused

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "sources",
        sa.Column("consecutive_gone", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("sources", sa.Column("paused_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("sources", "paused_reason")  # SQLite 3.35+ drops a column in place
    op.drop_column("sources", "consecutive_gone")
