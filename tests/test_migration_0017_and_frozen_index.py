"""Migration 0017's downgrade gives 0016's schema back (its row triggers and functions on
Postgres, the same sqlite_master on SQLite), and the migrations' frozen indexer writes the
unstemmed rows of revisions 0010 to 0015 (`stem=False`: 0010's upgrade and 0016's
downgrade; decision 0094)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, text

from newswatch.store.db import _alembic_config, make_engine, upgrade
from newswatch.store.migrations import frozen_search
from tests.test_search import _index_rows

_POSTGRES_SCHEMA = {
    "triggers": "SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t "
    "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND NOT t.tgisinternal ORDER BY 1, 2",
    "functions": "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p "
    "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = current_schema() "
    "ORDER BY 1",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes "
    "WHERE schemaname = current_schema() ORDER BY 1, 2",
}
_SQLITE_SCHEMA = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"


def _schema(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            queries = _POSTGRES_SCHEMA
        else:
            queries = {"sqlite_master": _SQLITE_SCHEMA}
        return {name: [tuple(r) for r in conn.execute(text(q))] for name, q in queries.items()}


def test_0017_downgrade_gives_0016s_schema_back(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        upgrade(engine, "0016")
        at_0016 = _schema(engine)
        upgrade(engine, "0017")
        at_0017 = _schema(engine)
        # The upgrade changed something to give back: the partial index on both engines.
        assert at_0017 != at_0016
        assert "ix_events_split_from" in repr(at_0017) and "ix_events_split_from" not in repr(
            at_0016
        )
        command.downgrade(_alembic_config(engine), "0016")
        assert _schema(engine) == at_0016
    finally:
        engine.dispose()


# One French article: its words folded (accents dropped), none stemmed ("presidents", not
# "president") nor tagged with its language, which is a field of its own.
EXPECTED_UNSTEMMED = {
    "sqlite": [(1, "elections a paris", "les presidents ont vote", "fr")],
    "postgresql": [
        (
            1,
            "'a':2A 'elections':1A 'fr':10C 'les':5B 'ont':7B 'paris':3A 'presidents':6B 'vote':8B",
        )
    ],
}


def test_the_frozen_indexer_writes_unstemmed_rows(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        upgrade(engine, "0015")  # the last revision of the unstemmed format
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO articles (id, title, text, language, content_hash, first_seen) "
                    "VALUES (1, 'Élections à Paris', 'Les présidents ont voté.', 'fr', 'h', "
                    "CURRENT_TIMESTAMP)"
                )
            )
            frozen_search.index_every_article(conn, stem=False)
            rows = _index_rows(conn)
            assert rows == EXPECTED_UNSTEMMED[conn.dialect.name]
    finally:
        engine.dispose()
