"""pages: article URLs already fetched by page, sitemap and full-text sources

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import newswatch.store.columns

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "page_urls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("first_seen", newswatch.store.columns.UTCDateTime(), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_id", "url", name="uq_page_urls_source_url"),
    )
    op.create_index("ix_page_urls_first_seen", "page_urls", ["first_seen"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_page_urls_first_seen", table_name="page_urls")
    op.drop_table("page_urls")
