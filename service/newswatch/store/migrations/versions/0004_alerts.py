"""alerts: rule matches, per-(rule, event) state, silences, the notification outbox

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import newswatch.store.columns

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", newswatch.store.columns.UTCDateTime(), nullable=False),
        sa.Column("batch_key", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("created_at", newswatch.store.columns.UTCDateTime(), nullable=False),
        sa.Column("claimed_at", newswatch.store.columns.UTCDateTime(), nullable=True),
        sa.Column("sent_at", newswatch.store.columns.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "idempotency_key", name="uq_notifications_channel_key"),
    )
    op.create_index("ix_notifications_due", "notifications", ["status", "not_before"], unique=False)
    op.create_index(op.f("ix_notifications_event_id"), "notifications", ["event_id"], unique=False)
    op.create_index(op.f("ix_notifications_rule"), "notifications", ["rule"], unique=False)
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("until", newswatch.store.columns.UTCDateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", newswatch.store.columns.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_silences_until"), "silences", ["until"], unique=False)
    op.create_table(
        "alert_state",
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("sources_notified", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("first_at", newswatch.store.columns.UTCDateTime(), nullable=False),
        sa.Column("last_at", newswatch.store.columns.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("rule", "event_id"),
    )
    op.create_table(
        "rule_matches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("at", newswatch.store.columns.UTCDateTime(), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["articles.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rule", "article_id", "source_id", name="uq_rule_matches"),
    )
    op.create_index(
        op.f("ix_rule_matches_article_id"), "rule_matches", ["article_id"], unique=False
    )
    op.create_index(
        "ix_rule_matches_rule_event", "rule_matches", ["rule", "event_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_rule_matches_rule_event", table_name="rule_matches")
    op.drop_index(op.f("ix_rule_matches_article_id"), table_name="rule_matches")
    op.drop_table("rule_matches")
    op.drop_table("alert_state")
    op.drop_index(op.f("ix_silences_until"), table_name="silences")
    op.drop_table("silences")
    op.drop_index(op.f("ix_notifications_rule"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_event_id"), table_name="notifications")
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.drop_table("notifications")
