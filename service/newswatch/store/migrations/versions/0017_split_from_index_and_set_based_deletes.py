"""ix_events_split_from; event_sources recounted once a statement on Postgres deletes

Revision ID: 0017
Revises: 0016

- `ix_events_split_from`: `events near ID` reads the near misses of the articles within the
  grouping window of ID's span, and the span includes the events split off ID (decision
  0180, amended). Only the few split-off events are in the index (partial: `split_from IS
  NOT NULL`), so grouping's event inserts do not write to it.
- Postgres: the triggers that keep `event_sources` when sightings or articles are deleted
  run once a statement over its deleted rows (transition tables), not once a row: deleting
  a source of 20,000 sightings took 23 s, each row recounting its (event, source) pair
  (decision 0217). SQLite has no statement-level triggers; its row triggers stay.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

SPLIT_OFF = sa.text("split_from IS NOT NULL")

# Postgres, once a statement: the (event, source) pairs of the deleted sightings whose
# article still has an event, or the events of the deleted articles, counted again from
# what is left. (A deleted article's sightings go by its foreign key: their pairs find no
# article, and the article's own trigger recounts its event.)
_PAIRS = (
    "SELECT DISTINCT a.event_id, g.source_id FROM gone g JOIN articles a ON a.id = g.article_id "
    "WHERE a.event_id IS NOT NULL"
)
_EVENTS = "SELECT DISTINCT event_id FROM gone WHERE event_id IS NOT NULL"
POSTGRES = [
    "DROP TRIGGER event_sources_sighting_deleted ON sightings",
    "DROP FUNCTION event_sources_sighting_deleted()",
    "DROP TRIGGER event_sources_article_deleted ON articles",
    "DROP FUNCTION event_sources_article_deleted()",
    "CREATE FUNCTION event_sources_sightings_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN "
    f"DELETE FROM event_sources e USING ({_PAIRS}) p "
    "WHERE e.event_id = p.event_id AND e.source_id = p.source_id; "
    "INSERT INTO event_sources (event_id, source_id, first_seen) "
    f"SELECT a.event_id, s.source_id, min(s.first_seen) FROM ({_PAIRS}) p "
    "JOIN articles a ON a.event_id = p.event_id "
    "JOIN sightings s ON s.article_id = a.id AND s.source_id = p.source_id "
    "GROUP BY a.event_id, s.source_id; "
    "RETURN NULL; END $$",
    "CREATE TRIGGER event_sources_sightings_deleted AFTER DELETE ON sightings "
    "REFERENCING OLD TABLE AS gone FOR EACH STATEMENT "
    "EXECUTE FUNCTION event_sources_sightings_deleted()",
    "CREATE FUNCTION event_sources_articles_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN "
    f"DELETE FROM event_sources WHERE event_id IN ({_EVENTS}); "
    "INSERT INTO event_sources (event_id, source_id, first_seen) "
    "SELECT a.event_id, s.source_id, min(s.first_seen) FROM articles a "
    f"JOIN sightings s ON s.article_id = a.id WHERE a.event_id IN ({_EVENTS}) "
    "GROUP BY a.event_id, s.source_id; "
    "RETURN NULL; END $$",
    "CREATE TRIGGER event_sources_articles_deleted AFTER DELETE ON articles "
    "REFERENCING OLD TABLE AS gone FOR EACH STATEMENT "
    "EXECUTE FUNCTION event_sources_articles_deleted()",
]
# The row triggers of 0016, as 0016 made them (a frozen copy: the downgrade restores them).
POSTGRES_DOWN = [
    "DROP FUNCTION event_sources_sightings_deleted() CASCADE",
    "DROP FUNCTION event_sources_articles_deleted() CASCADE",
    "CREATE FUNCTION event_sources_sighting_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "DECLARE ev integer; BEGIN "
    "SELECT event_id INTO ev FROM articles WHERE id = OLD.article_id; "
    "IF ev IS NOT NULL THEN PERFORM event_sources_recount(ev, OLD.source_id); END IF; "
    "RETURN NULL; END $$",
    "CREATE TRIGGER event_sources_sighting_deleted AFTER DELETE ON sightings FOR EACH ROW "
    "EXECUTE FUNCTION event_sources_sighting_deleted()",
    "CREATE FUNCTION event_sources_article_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN DELETE FROM event_sources WHERE event_id = OLD.event_id; "
    "INSERT INTO event_sources (event_id, source_id, first_seen) "
    "SELECT a.event_id, s.source_id, min(s.first_seen) FROM articles a "
    "JOIN sightings s ON s.article_id = a.id WHERE a.event_id = OLD.event_id "
    "GROUP BY a.event_id, s.source_id; RETURN NULL; END $$",
    "CREATE TRIGGER event_sources_article_deleted AFTER DELETE ON articles FOR EACH ROW "
    "WHEN (OLD.event_id IS NOT NULL) EXECUTE FUNCTION event_sources_article_deleted()",
]


def upgrade() -> None:
    op.create_index(
        "ix_events_split_from",
        "events",
        ["split_from"],
        unique=False,
        sqlite_where=SPLIT_OFF,
        postgresql_where=SPLIT_OFF,
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_DOWN:
            op.execute(statement)
    op.drop_index("ix_events_split_from", table_name="events")
