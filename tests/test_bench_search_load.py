"""bench/bench_search.py's fast Postgres load (decision 0209): the rows and indexes it leaves
are the store's, and its check of the index rows against the store's writer can fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from newswatch.store.db import make_engine, upgrade
from tests.bench_scripts import bench_script
from tests.conftest import SHARED_DATA, empty_database, shared_corpus

INDEXES = text(
    "SELECT tablename, indexname, replace(indexdef, current_schema() || '.', '') "
    "FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1, 2"
)


def test_the_fast_load_leaves_the_stores_rows_and_indexes(tmp_path: Path) -> None:
    shared_corpus(SHARED_DATA / "grouping" / "ecbplus-dev.jsonl")
    bench = bench_script("bench_search")
    with (
        empty_database("postgres", tmp_path) as loaded_url,
        empty_database("postgres", tmp_path) as fresh_url,
    ):
        loaded, fresh = make_engine(loaded_url), make_engine(fresh_url)
        try:
            upgrade(loaded)
            upgrade(fresh)
            _seconds, rare = bench.load(loaded, 300, 40, workers=0)
            with loaded.connect() as conn, fresh.connect() as other:
                assert conn.execute(INDEXES).all() == other.execute(INDEXES).all()
                assert conn.execute(text("SELECT count(*) FROM article_search")).scalar() == 300
            assert bench.loaded(loaded) == (300, rare)
            assert bench.check_index_rows(loaded, 300) == 300  # every row is the writer's
            with loaded.begin() as conn:  # one row changed: the check names it
                conn.execute(text("UPDATE article_search SET document = 'x' WHERE article_id = 7"))
            with pytest.raises(AssertionError, match="article 7"):
                bench.check_index_rows(loaded, 300)
        finally:
            loaded.dispose()
            fresh.dispose()
