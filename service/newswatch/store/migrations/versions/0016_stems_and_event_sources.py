"""search index stemmed by language; event_sources: each source's first sighting of each event

Revision ID: 0016
Revises: 0015

- The full-text index is written again, every article's title and text words as Snowball
  stems of its language (store/stemming.py, decision 0205). The downgrade writes it unstemmed.
- `event_sources` (event, source, first sighting), kept by the triggers below on both engines
  and filled from the sightings here: the events list's growth sort reads the last hour of it
  by `ix_event_sources_first_seen` (decision 0207).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newswatch.store.columns import UTCDateTime
from newswatch.store.migrations.frozen_search import index_every_article

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# Every (event, source) pair of the grouped articles, with the source's first sighting.
FILL = (
    "INSERT INTO event_sources (event_id, source_id, first_seen) "
    "SELECT a.event_id, s.source_id, min(s.first_seen) FROM sightings s "
    "JOIN articles a ON a.id = s.article_id WHERE a.event_id IS NOT NULL "
    "GROUP BY a.event_id, s.source_id"
)

# SQLite. A row this article held the earliest sighting of is counted again from the rest of
# its event (other rows cannot change); an article's delete recounts its whole event.
_SQLITE_EARLIER = "first_seen = min(first_seen, excluded.first_seen)"
SQLITE = [
    "CREATE TRIGGER event_sources_sighting_added AFTER INSERT ON sightings BEGIN "
    "INSERT INTO event_sources (event_id, source_id, first_seen) "
    "SELECT event_id, new.source_id, new.first_seen FROM articles "
    "WHERE id = new.article_id AND event_id IS NOT NULL "
    f"ON CONFLICT (event_id, source_id) DO UPDATE SET {_SQLITE_EARLIER}; END",
    "CREATE TRIGGER event_sources_article_moved AFTER UPDATE OF event_id ON articles "
    "WHEN old.event_id IS NOT new.event_id BEGIN "
    "INSERT INTO event_sources (event_id, source_id, first_seen) "
    "SELECT new.event_id, source_id, first_seen FROM sightings "
    "WHERE article_id = new.id AND new.event_id IS NOT NULL "
    f"ON CONFLICT (event_id, source_id) DO UPDATE SET {_SQLITE_EARLIER}; "
    "DELETE FROM event_sources WHERE event_id = old.event_id AND source_id IN ("
    "SELECT s.source_id FROM sightings s WHERE s.article_id = new.id "
    "AND s.first_seen <= event_sources.first_seen); "
    "INSERT INTO event_sources (event_id, source_id, first_seen) "
    "SELECT a.event_id, s.source_id, min(s.first_seen) FROM articles a "
    "JOIN sightings s ON s.article_id = a.id "
    "WHERE EXISTS (SELECT 1 FROM sightings x WHERE x.article_id = new.id AND NOT EXISTS ("
    "SELECT 1 FROM event_sources e WHERE e.event_id = old.event_id AND e.source_id = x.source_id))"
    " AND a.event_id = old.event_id "
    "AND s.source_id IN (SELECT source_id FROM sightings WHERE article_id = new.id) "
    "AND NOT EXISTS (SELECT 1 FROM event_sources e "
    "WHERE e.event_id = old.event_id AND e.source_id = s.source_id) "
    "GROUP BY a.event_id, s.source_id; END",
    "CREATE TRIGGER event_sources_sighting_deleted AFTER DELETE ON sightings BEGIN "
    "DELETE FROM event_sources WHERE source_id = old.source_id "
    "AND event_id = (SELECT event_id FROM articles WHERE id = old.article_id) "
    "AND first_seen >= old.first_seen; "
    "INSERT INTO event_sources (event_id, source_id, first_seen) "
    "SELECT a.event_id, s.source_id, min(s.first_seen) FROM articles a "
    "JOIN sightings s ON s.article_id = a.id "
    "WHERE a.event_id = (SELECT event_id FROM articles WHERE id = old.article_id) "
    "AND s.source_id = old.source_id AND NOT EXISTS (SELECT 1 FROM event_sources e "
    "WHERE e.event_id = a.event_id AND e.source_id = old.source_id) "
    "GROUP BY a.event_id, s.source_id; END",
    "CREATE TRIGGER event_sources_article_deleted AFTER DELETE ON articles "
    "WHEN old.event_id IS NOT NULL BEGIN "
    "DELETE FROM event_sources WHERE event_id = old.event_id; "
    "INSERT INTO event_sources (event_id, source_id, first_seen) "
    "SELECT a.event_id, s.source_id, min(s.first_seen) FROM articles a "
    "JOIN sightings s ON s.article_id = a.id WHERE a.event_id = old.event_id "
    "GROUP BY a.event_id, s.source_id; END",
]
SQLITE_TRIGGERS = (
    "event_sources_sighting_added",
    "event_sources_article_moved",
    "event_sources_sighting_deleted",
    "event_sources_article_deleted",
)

# Postgres: the same rules in PL/pgSQL. A new sighting reads its article FOR SHARE: if a
# concurrent transaction is placing that article in an event (the scaled mode's grouper
# beside a fetch worker), it waits for it and then sees the event; without the lock each
# would miss the other's uncommitted row and the pair would be lost.
_PG_EARLIER = "first_seen = LEAST(event_sources.first_seen, EXCLUDED.first_seen)"
POSTGRES = [
    "CREATE FUNCTION event_sources_recount(ev integer, src integer) RETURNS void "
    "LANGUAGE sql AS $$ "
    "DELETE FROM event_sources WHERE event_id = ev AND source_id = src; "
    "INSERT INTO event_sources (event_id, source_id, first_seen) "
    "SELECT ev, src, min(s.first_seen) FROM articles a JOIN sightings s ON s.article_id = a.id "
    "WHERE a.event_id = ev AND s.source_id = src HAVING min(s.first_seen) IS NOT NULL; $$",
    "CREATE FUNCTION event_sources_sighting_added() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "DECLARE ev integer; BEGIN "
    "SELECT event_id INTO ev FROM articles WHERE id = NEW.article_id FOR SHARE; "
    "IF ev IS NOT NULL THEN "
    "INSERT INTO event_sources (event_id, source_id, first_seen) "
    "VALUES (ev, NEW.source_id, NEW.first_seen) "
    f"ON CONFLICT (event_id, source_id) DO UPDATE SET {_PG_EARLIER}; "
    "END IF; RETURN NULL; END $$",
    "CREATE TRIGGER event_sources_sighting_added AFTER INSERT ON sightings FOR EACH ROW "
    "EXECUTE FUNCTION event_sources_sighting_added()",
    "CREATE FUNCTION event_sources_article_moved() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "DECLARE src integer; BEGIN "
    "IF NEW.event_id IS NOT NULL THEN "
    "INSERT INTO event_sources (event_id, source_id, first_seen) "
    "SELECT NEW.event_id, source_id, first_seen FROM sightings WHERE article_id = NEW.id "
    f"ON CONFLICT (event_id, source_id) DO UPDATE SET {_PG_EARLIER}; "
    "END IF; "
    "IF OLD.event_id IS NOT NULL THEN "
    "FOR src IN SELECT s.source_id FROM sightings s JOIN event_sources e "
    "ON e.event_id = OLD.event_id AND e.source_id = s.source_id "
    "WHERE s.article_id = NEW.id AND s.first_seen <= e.first_seen LOOP "
    "PERFORM event_sources_recount(OLD.event_id, src); END LOOP; "
    "END IF; RETURN NULL; END $$",
    "CREATE TRIGGER event_sources_article_moved AFTER UPDATE OF event_id ON articles "
    "FOR EACH ROW WHEN (OLD.event_id IS DISTINCT FROM NEW.event_id) "
    "EXECUTE FUNCTION event_sources_article_moved()",
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
POSTGRES_FUNCTIONS = (
    "event_sources_sighting_added()",
    "event_sources_article_moved()",
    "event_sources_sighting_deleted()",
    "event_sources_article_deleted()",
    "event_sources_recount(integer, integer)",
)


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "event_sources",
        sa.Column("event_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("source_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id", "source_id"),
    )
    op.create_index(
        "ix_event_sources_first_seen", "event_sources", ["first_seen", "event_id"], unique=False
    )
    op.execute(FILL)
    for statement in POSTGRES if bind.dialect.name == "postgresql" else SQLITE:
        op.execute(statement)
    index_every_article(bind, stem=True)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for function in POSTGRES_FUNCTIONS:
            op.execute(f"DROP FUNCTION {function} CASCADE")
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {trigger}")
    op.drop_index("ix_event_sources_first_seen", table_name="event_sources")
    op.drop_table("event_sources")
    index_every_article(bind, stem=False)
