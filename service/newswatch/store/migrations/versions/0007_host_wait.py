"""sources.host_wait_seconds: how long the last fetch waited for its host's turn

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sources", sa.Column("host_wait_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("sources", "host_wait_seconds")  # SQLite 3.35+ drops a column in place
