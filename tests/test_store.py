"""The store: migrations, pragmas, and that the migrations match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from newswatch.store.db import current_revision, head_revision, make_engine, upgrade
from newswatch.store.schema import include_name, metadata


def test_migrations_reach_head_and_are_idempotent(engine):
    assert current_revision(engine) == head_revision()
    upgrade(engine)  # a second run changes nothing and does not fail
    tables = set(inspect(engine).get_table_names())
    assert {"sources", "fetches", "articles", "sightings"} <= tables


def test_migrations_match_models(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": include_name})
        diff = compare_metadata(context, metadata)
    assert diff == [], f"models and migrations disagree: {diff}"


def test_sqlite_pragmas(sqlite_engine):
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        assert conn.execute(text("PRAGMA cache_size")).scalar() == -64 * 1024  # 64 MiB


def test_postgres_url_forms_accepted(tmp_path):
    eng = make_engine("postgres://user@localhost/db")
    assert eng.dialect.driver == "psycopg"
