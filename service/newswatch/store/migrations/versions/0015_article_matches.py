"""article_matches: one row an article with the rules it matched (replaces rule_matches, a
row per rule and carrying source; decision 0225)

Revision ID: 0015
Revises: 0014

The rows of rule_matches are carried over: each article's rules, with the words found, go
into its one row. What the old rows held besides is read elsewhere now: the event and the
time from the article, the sources from its sightings (the rule's `sources` and
`exclude_sources` lists apply when a match is judged). A downgrade writes a rule_matches row
for every (rule, article, carrier), at the article's time (store/timing.py): the carriers a
rule's lists left out come back too.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import newswatch.store.columns
from newswatch.store.migrations.frozen_values import article_time_sql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# One row an article: its rules (a JSON object's keys) and each one's words, from the rows
# of each (article, rule), which repeat the words for every carrier.
_COPY = {
    "sqlite": """
        INSERT INTO article_matches (article_id, rules)
        SELECT article_id, json_group_object(rule, json(terms))
        FROM (SELECT article_id, rule, min(terms) AS terms FROM rule_matches
              GROUP BY article_id, rule)
        GROUP BY article_id
    """,
    "postgresql": """
        INSERT INTO article_matches (article_id, rules)
        SELECT article_id, json_object_agg(rule, terms::json)
        FROM (SELECT article_id, rule, min(terms::text) AS terms FROM rule_matches
              GROUP BY article_id, rule) AS per_rule
        GROUP BY article_id
    """,
}


def upgrade() -> None:
    op.create_table(
        "article_matches",
        sa.Column("article_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["articles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("article_id"),
    )
    op.execute(_COPY[op.get_bind().dialect.name])
    op.drop_index("ix_rule_matches_rule_event", table_name="rule_matches")
    op.drop_index(op.f("ix_rule_matches_article_id"), table_name="rule_matches")
    op.drop_table("rule_matches")


def downgrade() -> None:
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
    matches = sa.table("article_matches", sa.column("article_id"), sa.column("rules"))
    articles = sa.table(
        "articles",
        sa.column("id"),
        sa.column("event_id"),
        sa.column("published", newswatch.store.columns.UTCDateTime()),
        sa.column("first_seen", newswatch.store.columns.UTCDateTime()),
    )
    sightings = sa.table("sightings", sa.column("article_id"), sa.column("source_id"))
    names = sa.func.json_each(matches.c.rules).table_valued("key", "value", joins_implicitly=True)
    rows = (
        sa.select(
            names.c.key,
            articles.c.event_id,
            matches.c.article_id,
            sightings.c.source_id,
            article_time_sql(articles.c.published, articles.c.first_seen),
            names.c.value,
        )
        .select_from(
            matches.join(articles, articles.c.id == matches.c.article_id).join(
                sightings, sightings.c.article_id == matches.c.article_id
            ),
            names,
        )
        .where(articles.c.event_id.is_not(None))  # (one sighting an article and source)
    )
    target = sa.table(
        "rule_matches",
        *(sa.column(c) for c in ("rule", "event_id", "article_id", "source_id", "at", "terms")),
    )
    op.execute(
        sa.insert(target).from_select(
            ["rule", "event_id", "article_id", "source_id", "at", "terms"], rows
        )
    )
    op.drop_table("article_matches")
