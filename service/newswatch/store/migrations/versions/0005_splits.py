"""splits: events.split_from, and the event_overview view shows it

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

VIEW_COLUMNS = """e.id, e.title, e.first_seen, e.last_seen, e.article_count, e.source_count,
       (SELECT COUNT(*) FROM articles a
         WHERE a.event_id = e.id AND a.duplicate_of IS NOT NULL) AS duplicate_count,
       (SELECT COUNT(*) FROM events m WHERE m.merged_into = e.id) AS merged_count,
       e.top_entities, e.revision, e.updated_at"""


def _view(columns: str) -> str:
    return (
        f"CREATE VIEW event_overview AS SELECT {columns} FROM events e WHERE e.merged_into IS NULL"
    )


def upgrade() -> None:
    op.execute("DROP VIEW event_overview")
    # A plain ADD COLUMN without a foreign key: SQLite can add a constraint only in batch
    # mode, which copies and drops the events table, and with foreign keys on that drop
    # would cascade into the rule matches. (Events are never deleted; the id stays valid.)
    op.add_column("events", sa.Column("split_from", sa.Integer(), nullable=True))
    op.execute(_view(VIEW_COLUMNS + ", e.split_from"))


def downgrade() -> None:
    op.execute("DROP VIEW event_overview")
    op.drop_column("events", "split_from")  # SQLite 3.35+ drops a column in place
    op.execute(_view(VIEW_COLUMNS))
