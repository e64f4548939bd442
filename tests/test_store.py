"""The store: migrations, pragmas, and that the migrations match the models."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from newswatch.store.db import (
    MIGRATIONS_DIR,
    StoreUnavailable,
    current_revision,
    head_revision,
    make_engine,
    migration_heads,
    open_store,
    stored_revision,
    upgrade,
)
from newswatch.store.schema import include_name, metadata


def test_migrations_reach_head_and_are_idempotent(engine):
    assert current_revision(engine) == head_revision()
    upgrade(engine)  # a second run changes nothing and does not fail
    tables = set(inspect(engine).get_table_names())
    assert {"sources", "fetches", "articles", "sightings"} <= tables


def test_migration_heads_read_from_the_files_are_alembics(tmp_path):
    assert migration_heads() == {head_revision()}
    # A second head (a migration that revises the same one as another) is seen as such.
    (tmp_path / "a.py").write_text('revision = "0001"\ndown_revision = None\n')
    (tmp_path / "b.py").write_text("revision = '0002'\ndown_revision = '0001'\n")
    (tmp_path / "c.py").write_text('revision = "0003"\ndown_revision = "0001"\n')
    assert migration_heads(tmp_path) == {"0002", "0003"}


def test_open_store_migrates_a_store_that_is_behind_and_leaves_a_current_one(store_url):
    engine = make_engine(store_url)
    with engine.connect() as conn:
        assert stored_revision(conn) is None  # empty: no alembic_version table
    upgrade(engine, "0011")
    engine.dispose()
    opened = open_store(store_url)  # behind: migrated to the head
    with opened.connect() as conn:
        assert stored_revision(conn) == head_revision() == current_revision(opened)
    opened.dispose()
    again = open_store(store_url)  # current: read, nothing to do
    with again.connect() as conn:
        assert stored_revision(conn) == head_revision()
    again.dispose()


# Opens the store given as the argument and prints its revision and whether alembic was
# imported: a process of its own, so that what this test process imported does not count.
_OPEN_AND_REPORT = (
    "import sys\n"
    "from newswatch.store.db import open_store, stored_schema\n"
    "engine = open_store(sys.argv[1])\n"
    "print(stored_schema(engine), 'alembic' in sys.modules)\n"
)


def test_open_store_at_head_reads_one_row_and_imports_no_alembic(store_url):
    engine = make_engine(store_url)
    upgrade(engine)
    engine.dispose()
    opened = subprocess.run(
        [sys.executable, "-c", _OPEN_AND_REPORT, store_url], capture_output=True, text=True
    )
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.split() == [head_revision(), "False"]


def test_open_store_migrates_a_store_one_revision_behind(store_url):
    from alembic.script import ScriptDirectory

    behind = ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(head_revision()).down_revision
    assert isinstance(behind, str)
    engine = make_engine(store_url)
    upgrade(engine, behind)
    engine.dispose()
    opened = subprocess.run(
        [sys.executable, "-c", _OPEN_AND_REPORT, store_url], capture_output=True, text=True
    )
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.split() == [head_revision(), "True"]  # alembic ran: it was behind


def test_open_store_refuses_a_store_newer_than_the_code(store_url):
    engine = make_engine(store_url)
    upgrade(engine)
    newer = f"{int(head_revision() or 0) + 1:04d}"  # a revision this code does not know
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": newer})
    engine.dispose()
    with pytest.raises(StoreUnavailable, match=f"Can't locate revision identified by '{newer}'"):
        open_store(store_url)
    engine = make_engine(store_url)
    with engine.connect() as conn:
        assert stored_revision(conn) == newer  # nothing was changed
    engine.dispose()


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
