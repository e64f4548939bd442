"""Full-text search over a large store, on SQLite and Postgres, against what a user would
write instead.

    python bench/bench_search.py [--articles 1000000] [--words 150] [--engines sqlite,postgres]
                                 [--repeats 5] [--keep DIR] [--schema NAME] [--workers 2]
                                 [--modes search,raw,like] [--before OLD_SEARCH_PY]

Articles come from the synthetic news stream (bench/synthetic_news.py: sentences of the real
ECB+ corpus, names of each event's own), `--words` words of text each, in batches of 2,000
with the index rows the store itself would write. SQLite: multi-row inserts and
store.search.index_new_articles (as store_batch does), every index in place. Postgres: COPY
of the articles and of their tsvectors built by store.search.document_of / tsvector_literal
(what search._index_rows writes) in `--workers` processes, each batch committed without
waiting for the disk; the indexes that back no constraint (the GIN index, the articles'
secondary ones) dropped for the load and made again from their own definitions
(pg_get_indexdef, compared after), then ANALYZE; finally 1,000 random articles' index rows
are compared with what the store's writer writes for them (check_index_rows). 1,000,000 in
32 minutes at load 8-17 on the shared 2-core machine (~70 with the indexes kept in step).
Postgres: the schema named in the output, under $NEWSWATCH_TEST_DATABASE_URL (dropped
afterwards unless --keep); with --schema NAME that schema is used and kept, and a store
already loaded there is measured without loading. A loaded database can be kept as a
template (CREATE DATABASE copy TEMPLATE loaded) and measured again at once.

For each query, interleaved `--repeats` times, the first page (50 articles, newest first
seen first) as:
- search: store.search.list_articles with the query (what GET /api/articles?q= runs);
- raw: the engine's own full-text query written by hand (FTS5 MATCH / a tsquery) of the
  English stems (the articles are English), joined to articles, in the same order (newest
  id first) and limit: what our translation (every language's stem of each word) and the
  list's columns add;
- like: a LIKE (Postgres: ILIKE) scan of title and text, the same order and limit: what a
  user without a full-text index would run.
- before (with --before FILE): list_articles of an older copy of store/search.py, run
  alternately first and second with `search`; both must list the same ids.
Target: search median < 100 ms on both engines. Prints min/median/max in ms per mode.

With --ingest N: what indexing adds to storing. N entries (of `--words` words) are stored
with store_batch, in batches of 250, with the index write and without it (the index writer
replaced by a no-op), alternately `--repeats` times into fresh stores; ms per 1,000 entries.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import Connection, Engine, bindparam, create_engine, insert, text
from sqlalchemy.orm import Session

from newswatch.store import search as current
from newswatch.store.db import make_engine, normalise_url, session_scope, upgrade
from newswatch.store.models import Article, Source, table_of
from newswatch.store.search import document_of, index_new_articles, tsvector_literal
from newswatch.store.stemming import stem_word
from synthetic_news import stream

BATCH = 2_000
MODES = frozenset(("search", "raw", "like"))
PAGE = 50
ARTICLES = table_of(Article)
SOURCES = table_of(Source)


def load(engine: Engine, count: int, words: int, workers: int = 2) -> tuple[float, str]:
    """Store `count` synthetic articles; the seconds it took and a rare name of the stream.

    The index rows are the store's own (search.document_of / tsvector_literal on Postgres,
    index_new_articles on SQLite). SQLite: multi-row inserts, BATCH at a time, with every
    index in place. Postgres: see _load_postgres."""
    started = time.perf_counter()
    with session_scope(engine) as session:
        rows = [
            {"name": f"outlet-{i}", "url": f"x{i}", "configured_url": f"x{i}", "options": {}}
            for i in range(400)
        ]
        session.execute(insert(SOURCES), rows)
    rare: list[str] = []

    def batches() -> Iterator[list[dict[str, object]]]:
        batch: list[dict[str, object]] = []
        for n, record in enumerate(stream(count, words=words)):
            title = str(record["title"])
            when = datetime.fromisoformat(str(record["published"]))
            batch.append(
                {
                    "id": n + 1,
                    "title": title,
                    "text": record["text"],
                    "url": record["url"],
                    "published": when,
                    "first_seen": when,
                    "language": "en",
                    "content_hash": f"{n:064x}",
                    "source_id": int(str(record["source"]).split("-")[1]) + 1,
                }
            )
            if n == count // 2:
                rare.append(title.split()[0])
            if len(batch) == BATCH:
                yield batch
                batch = []
            if (n + 1) % 100_000 == 0:
                print(f"  {n + 1:,} stored, {time.perf_counter() - started:.0f} s", flush=True)
        if batch:
            yield batch

    if engine.dialect.name == "postgresql":
        _load_postgres(engine, batches(), workers)
    else:
        for batch in batches():
            _write(engine, batch)
    return time.perf_counter() - started, rare[0]


def loaded(engine: Engine) -> tuple[int, str]:
    """The articles a kept store holds and its rare name (as `load` picked it), or 0."""
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM articles")).scalar_one()
        if not count:
            return 0, ""
        if conn.dialect.name == "postgresql" and not _indexed(conn):
            # The fast load drops the search index and rebuilds it last: without it the load
            # was interrupted, and a partial store would be measured as if complete.
            raise SystemExit("the kept store's load did not finish (no search index): drop it")
        title = conn.execute(
            text("SELECT title FROM articles WHERE id = :id"), {"id": count // 2 + 1}
        ).scalar_one()
    return int(count), str(title).split()[0]


def _indexed(conn: Connection) -> bool:
    """Whether the search table has its GIN index (rebuilt at the end of the fast load)."""
    query = (
        "SELECT count(*) FROM pg_indexes WHERE tablename = 'article_search'"
        " AND schemaname = current_schema() AND indexdef LIKE '%USING gin%'"
    )
    return bool(conn.execute(text(query)).scalar_one())


def _write(engine: Engine, batch: list[dict[str, object]]) -> None:
    with session_scope(engine) as session:
        session.execute(insert(ARTICLES), batch)
        index_new_articles(session, batch)


COLUMNS = ("id", "title", "text", "url", "published", "first_seen", "language")
COLUMNS += ("content_hash", "source_id")
# The loaded tables' indexes that back no constraint: dropped for the load and made again
# from their own definitions after it (a GIN index built in one pass takes minutes; kept in
# step row by row, the load took over an hour on the shared machine).
_DEFERRED_INDEXES = text(
    "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
    "WHERE i.indrelid IN (CAST('articles' AS regclass), CAST('article_search' AS regclass)) "
    "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) "
    "ORDER BY 1"
)


def documents(batch: list[dict[str, object]]) -> list[tuple[object, str]]:
    """The batch's index rows as the store writes them on Postgres (search._index_rows):
    (article id, tsvector literal of document_of)."""
    return [
        (row["id"], tsvector_literal(document_of(_text(row["title"]), _text(row["text"]), "en")))
        for row in batch
    ]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _load_postgres(
    engine: Engine, batches: Iterator[list[dict[str, object]]], workers: int
) -> None:
    """COPY of the articles and of their index rows (the store's tsvectors, built by
    `workers` processes while the main one copies), one commit a batch without waiting for
    the disk; the indexes that back no constraint are made after the load from their own
    definitions (pg_get_indexdef, checked equal afterwards), then ANALYZE, and a sample of
    the index rows is checked against the store's own writer (check_index_rows)."""
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute(_DEFERRED_INDEXES.text)
            deferred = cur.fetchall()
            for name, _definition in deferred:
                cur.execute(f"DROP INDEX {name}")
            cur.execute("SET synchronous_commit = off")
            raw.commit()
            pool = multiprocessing.get_context("fork").Pool(workers) if workers else None
            try:
                while window := list(itertools.islice(batches, 4 * max(workers, 1))):
                    made = pool.imap(documents, window) if pool else map(documents, window)
                    for batch, docs in zip(window, made, strict=True):
                        _copy(cur, batch, docs)
                        raw.commit()
            finally:
                if pool:
                    pool.terminate()
            cur.execute("SET maintenance_work_mem = '1GB'")
            for _name, definition in deferred:
                cur.execute(definition)
            raw.commit()
            cur.execute(_DEFERRED_INDEXES.text)
            assert cur.fetchall() == deferred, "an index was not made again as it was"
            raw.commit()
            cur.execute("ANALYZE")
            raw.commit()
    finally:
        raw.close()
    check_index_rows(engine, 1_000)


def _copy(cur: Any, batch: list[dict[str, object]], docs: list[tuple[object, str]]) -> None:
    with cur.copy(f"COPY articles ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        for row in batch:
            copy.write_row([row[c] for c in COLUMNS])
    with cur.copy("COPY article_search (article_id, document) FROM STDIN") as copy:
        for doc in docs:
            copy.write_row(doc)


def check_index_rows(engine: Engine, sample: int) -> int:
    """Postgres: `sample` random articles' index rows compared with what the store's own
    writer (search.index_new_articles) writes for them, in a transaction rolled back; an
    AssertionError naming the first that differs. Returns how many were compared."""
    with engine.connect() as conn:
        ids = (
            conn.execute(text("SELECT id FROM articles ORDER BY random() LIMIT :n"), {"n": sample})
            .scalars()
            .all()
        )
        stored = _documents_of(conn, list(ids))
        with Session(bind=conn) as session:
            rows = (
                session.execute(
                    text(
                        "SELECT id, title, text, summary, language FROM articles WHERE id IN :ids"
                    ).bindparams(bindparam("ids", expanding=True)),
                    {"ids": list(ids)},
                )
                .mappings()
                .all()
            )
            session.execute(
                text("DELETE FROM article_search WHERE article_id IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": list(ids)},
            )
            index_new_articles(session, [dict(r) for r in rows])
            written = _documents_of(session, list(ids))
            session.rollback()
    for article_id in ids:
        assert stored.get(article_id) == written.get(article_id), f"article {article_id}"
    return len(ids)


def _documents_of(conn: Connection | Session, ids: list[int]) -> dict[int, str]:
    query = text(
        "SELECT article_id, CAST(document AS text) FROM article_search WHERE article_id IN :ids"
    ).bindparams(bindparam("ids", expanding=True))
    return {int(r[0]): str(r[1]) for r in conn.execute(query, {"ids": ids})}


def queries(rare: str) -> list[tuple[str, str, str, str]]:
    """(label, our query, the engine's raw FTS5 query, the raw tsquery), and the LIKE parts
    are derived from the words. The raw queries are what a person who knows the store holds
    English articles would write: the English stems only (`en¦polic`), where ours asks for
    the word's stem in every language (store/search.py index_tree)."""

    def en(word: str) -> str:
        return stem_word(word, "en")

    low = en(rare.lower())
    police, the = en("police"), en("the")
    return [
        ("common word", "police", f'"{police}"', f"'{police}'"),
        ("rare name", rare, f'"{low}"', f"'{low}'"),
        ("phrase", '"the police"', f'"{the} {police}"', f"'{the}' <-> '{police}'"),
        (
            "boolean",
            "police AND (killed OR shot) NOT earthquake",
            f'"{police}" AND ("{en("killed")}" OR "{en("shot")}") NOT "{en("earthquake")}"',
            f"'{police}' & ('{en('killed')}' | '{en('shot')}') & !'{en('earthquake')}'",
        ),
        ("prefix", "earthquak*", f'"{en("earthquak")}" *', f"'{en('earthquak')}':*"),
        ("title field", f"title:{rare}", f'title : "{low}"', f"'{low}':A"),
    ]


LIKE = {
    "common word": [["police"]],
    "phrase": [["the police"]],
    "boolean": [["police"], ["killed", "shot"]],
    "prefix": [["earthquak"]],
}
LIKE_NOT = {"boolean": ["earthquake"]}


def like_sql(engine: Engine, label: str, rare: str) -> str:
    op = "ILIKE" if engine.dialect.name == "postgresql" else "LIKE"

    def has(word: str, title_only: bool = False) -> str:
        if title_only:
            return f"title {op} '%{word}%'"
        return f"(title {op} '%{word}%' OR text {op} '%{word}%')"

    if label == "rare name":
        where = has(rare)
    elif label == "title field":
        where = has(rare, title_only=True)
    else:
        where = " AND ".join(
            "(" + " OR ".join(has(w) for w in group) + ")" for group in LIKE[label]
        )
        for word in LIKE_NOT.get(label, []):
            where += f" AND NOT {has(word)}"
    return _page(f"SELECT id FROM articles WHERE {where}")


def _page(select_sql: str) -> str:
    return f"{select_sql} ORDER BY first_seen DESC, id DESC LIMIT {PAGE + 1}"


def raw_sql(engine: Engine, fts5: str, tsquery: str) -> tuple[str, dict[str, str]]:
    """The engine's full-text query written by hand, in the index's own order."""
    if engine.dialect.name == "postgresql":
        return (
            "SELECT a.id FROM article_search s JOIN articles a ON a.id = s.article_id "
            "WHERE s.document @@ CAST(:q AS tsquery) "
            f"ORDER BY s.article_id DESC LIMIT {PAGE + 1}",
            {"q": tsquery},
        )
    return (
        "SELECT a.id FROM article_search JOIN articles a ON a.id = article_search.rowid "
        f"WHERE article_search MATCH :q ORDER BY article_search.rowid DESC LIMIT {PAGE + 1}",
        {"q": fts5},
    )


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    found = fn()
    return (time.perf_counter() - started) * 1000, found


def measure(
    engine: Engine,
    rare: str,
    repeats: int,
    before: ModuleType | None = None,
    modes: frozenset[str] = MODES,
) -> list[tuple[str, str, list[float], int]]:
    """Each query kind in each of `modes`, interleaved `repeats` times; with `before` (an
    older store/search.py loaded as a module) its list_articles too, as mode "before",
    which must list the same ids."""
    out: dict[tuple[str, str], list[float]] = {}
    hits: dict[tuple[str, str], int] = {}
    for round_ in range(repeats):
        for label, ours, fts5, tsq in queries(rare):
            raw, params = raw_sql(engine, fts5, tsq)
            like = like_sql(engine, label, rare)
            listed: dict[str, list[int]] = {}

            def search(
                module: Any, mode: str, query: str, listed: dict[str, list[int]]
            ) -> Callable[[], int]:
                compiled = module.compile_query(query)

                def go() -> int:
                    with session_scope(engine) as session:
                        filters = module.ArticleFilter(q=compiled)
                        rows, _more = module.list_articles(session, filters, PAGE)
                        listed[mode] = [r.id for r in rows]
                        return len(rows)

                return go

            def run(sql: str, p: dict[str, str]) -> Callable[[], int]:
                def go() -> int:
                    with engine.connect() as conn:
                        return len(conn.execute(text(sql), p).all()[:PAGE])

                return go

            runs = [
                ("search", search(current, "search", ours, listed)),
                ("before", search(before, "before", ours, listed) if before else None),
                ("raw", run(raw, params)),
                ("like", run(like, {})),
            ]
            if round_ % 2:  # which of the two lists runs first alternates (warm caches)
                runs[0], runs[1] = runs[1], runs[0]
            for mode, fn in runs:
                if fn is None or mode not in modes | {"before"}:
                    continue
                ms, found = timed(fn)
                out.setdefault((label, mode), []).append(ms)
                hits[(label, mode)] = found
            if before is not None:
                assert listed["before"] == listed["search"], f"{label}: the lists differ"
    return [(label, mode, values, hits[(label, mode)]) for (label, mode), values in out.items()]


def load_module(path: Path) -> ModuleType:
    """An older copy of store/search.py, to measure beside the current one."""
    spec = importlib.util.spec_from_file_location("search_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def report(engine_name: str, count: int, results: list[tuple[str, str, list[float], int]]) -> None:
    print(f"\n{engine_name}, {count:,} articles: first page ({PAGE}), ms min / median / max")
    for label, mode, values, found in results:
        print(
            f"  {label:12} {mode:7} {min(values):9.1f} {statistics.median(values):9.1f} "
            f"{max(values):9.1f}   ({found} rows)"
        )


def postgres_engine(keep: bool, schema: str | None = None) -> tuple[Engine, Callable[[], None]]:
    """An engine on a new schema, or on `schema` (created when missing, kept)."""
    base = os.environ.get("NEWSWATCH_TEST_DATABASE_URL")
    if not base:
        raise SystemExit("set NEWSWATCH_TEST_DATABASE_URL for the Postgres run")
    keep = keep or schema is not None
    schema = schema or "bench_search_" + uuid.uuid4().hex[:8]
    admin = create_engine(normalise_url(base))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    sep = "&" if "?" in base else "?"
    engine = make_engine(f"{normalise_url(base)}{sep}options=-csearch_path%3D{schema}")
    print(f"postgres schema {schema}")

    def drop() -> None:
        engine.dispose()
        if not keep:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return engine, drop


def ingest_cost(name: str, count: int, words: int, repeats: int) -> None:
    """store_batch with and without the index write, interleaved; see the module's text."""
    import newswatch.store.articles as store_articles
    from newswatch.shared_types import ParsedEntry
    from newswatch.store.articles import ensure_source, store_batch

    records = list(stream(count * repeats * 2, words=words))
    entries = [
        ParsedEntry(url=str(r["url"]), title=str(r["title"]), text=str(r["text"]), language="en")
        for r in records
    ]
    real = store_articles.index_new_articles
    results: dict[str, list[float]] = {"with index": [], "without": []}
    for rep in range(repeats):
        for mode in results:
            store_articles.index_new_articles = real if mode == "with index" else _no_index
            with tempfile.TemporaryDirectory() as tmp:
                engine, cleanup = _fresh(name, Path(tmp))
                try:
                    upgrade(engine)
                    part = entries[(rep * 2 + (mode == "without")) * count :][:count]
                    started = time.perf_counter()
                    for start in range(0, count, 250):
                        with session_scope(engine) as session:
                            source = ensure_source(session, "bench")
                            batch = [(source, e) for e in part[start : start + 250]]
                            store_batch(session, batch)
                    seconds = time.perf_counter() - started
                    results[mode].append(seconds * 1000 / count * 1000)
                finally:
                    cleanup()
    store_articles.index_new_articles = real
    print(f"\n{name}: store_batch of {count:,} entries, ms per 1,000 (min / median / max)")
    for mode, values in results.items():
        print(f"  {mode:10} {min(values):9.1f} {statistics.median(values):9.1f} {max(values):9.1f}")


def _no_index(_session: object, _rows: object) -> None:
    return None


def _fresh(name: str, folder: Path) -> tuple[Engine, Callable[[], None]]:
    if name == "sqlite":
        engine = make_engine(f"sqlite:///{folder / 'ingest.db'}")
        return engine, engine.dispose
    return postgres_engine(keep=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--articles", type=int, default=1_000_000)
    parser.add_argument("--words", type=int, default=150)
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="keep the SQLite file here (and the schema)")
    parser.add_argument(
        "--workers", type=int, default=2, help="Postgres load: processes building tsvectors"
    )
    parser.add_argument("--modes", default=",".join(sorted(MODES)), help="of search,raw,like")
    parser.add_argument(
        "--before",
        type=Path,
        help="an older store/search.py (git show REV:service/newswatch/store/search.py > F) "
        "measured beside the current one, interleaved; its lists must be the same",
    )
    parser.add_argument("--ingest", type=int, help="measure what indexing adds to storing")
    parser.add_argument(
        "--schema",
        help="Postgres: use (and keep) this schema; a store already loaded there is measured "
        "as it is, without loading again",
    )
    args = parser.parse_args()
    if args.ingest:
        for name in args.engines.split(","):
            ingest_cost(name, args.ingest, args.words, args.repeats)
        return
    for name in args.engines.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            if name == "sqlite":
                folder = args.keep or Path(tmp)
                engine = make_engine(f"sqlite:///{folder / 'search.db'}")

                cleanup = engine.dispose
            else:
                engine, cleanup = postgres_engine(args.keep is not None, args.schema)
            try:
                upgrade(engine)
                count, rare = loaded(engine)
                if not count:
                    print(f"{name}: storing {args.articles:,} articles of ~{args.words} words")
                    seconds, rare = load(engine, args.articles, args.words, args.workers)
                    print(f"  stored in {seconds:.0f} s ({args.articles / seconds:,.0f}/s)")
                    count = args.articles
                before = load_module(args.before) if args.before else None
                modes = frozenset(args.modes.split(","))
                report(name, count, measure(engine, rare, args.repeats, before, modes))
            finally:
                cleanup()


if __name__ == "__main__":
    main()
