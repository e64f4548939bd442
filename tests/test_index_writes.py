"""The full-text index rows a batch writes (store_batch: one executemany, its statement
compiled once) are those the store derives article by article (a rebuild), on both engines;
index tokens stem each distinct word once and equal stemming every word."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from newswatch.fetch.feeds import parse_feed
from newswatch.fetch.language import language_of
from newswatch.store import stemming
from newswatch.store.alerts import MATCHES
from newswatch.store.articles import admit_entries, ensure_source, store_batch
from newswatch.store.db import defer_update, session_scope
from newswatch.store.executemany import _compiled
from newswatch.store.migrations import frozen_search
from newswatch.store.models import Source, table_of
from newswatch.store.search import document_of
from newswatch.store.stemming import MAX_WORD_CHARS, index_tokens, stem_words
from newswatch.store.upsert import insert_ignoring_conflicts
from tests.conftest import SHARED_DATA

FEEDS = SHARED_DATA / "feeds"
# Real feeds in German, Russian, Portuguese, Italian and English (tests/test_language.py).
REAL_FEEDS = [
    "rss-parser/test/input/heise.atom",
    "node-feedparser/test/feeds/iconv.xml",
    "feed-rs/fixture/rss2/rss_2.0_spiegel.xml",
    "rss-parser/test/input/encoding.rss",
    "feed-rs/fixture/rss2/rss_2.0_ilgiornale.xml",
    "rss-parser/test/input/reddit.rss",
    "rss-parser/test/input/feedburner.atom",
]


def _index_rows(engine: Engine) -> dict[int, tuple[Any, ...]]:
    with session_scope(engine) as session:
        if session.get_bind().dialect.name == "postgresql":
            query = "SELECT article_id, document::text FROM article_search"
        else:
            query = "SELECT rowid, title, text, lang FROM article_search"
        return {row[0]: tuple(row[1:]) for row in session.execute(text(query))}


def test_a_batchs_index_rows_are_the_rebuilt_ones(engine: Engine) -> None:
    """Entries of real feeds in five languages stored in two batches: the index rows written
    with them equal the rows the store writes again from the stored articles; the second
    batch compiles no statement."""
    feeds = [
        parse_feed((FEEDS / path).read_bytes(), url="https://f.example/") for path in REAL_FEEDS
    ]
    halves = [feeds[:3], feeds[3:]]
    misses = []
    for half in halves:
        admitted, _rejected = admit_entries([e for feed in half for e in feed.entries])
        with session_scope(engine) as session:
            source = ensure_source(session, "feeds")
            stored = store_batch(session, [(source, e) for e in admitted], language_of=language_of)
        assert any(a.is_new for a in stored)
        misses.append(_compiled.cache_info().misses)
    written = _index_rows(engine)
    assert len(written) > 100
    assert misses[1] == misses[0]  # the same INSERT statements, compiled once
    with engine.begin() as conn:
        # Rewritten by the migrations' frozen indexer: no memo, no executemany, its own
        # statements (tests/test_search.py keeps it equal to the live indexer's rules).
        frozen_search.index_every_article(conn, stem=True)
    assert _index_rows(engine) == written


def test_memoised_index_tokens_equal_stemming_each_word() -> None:
    """index_tokens (each distinct word stemmed once) gives what stemming every word gives,
    over real text in several languages, words over the length cut included."""
    for path in REAL_FEEDS:
        for entry in parse_feed((FEEDS / path).read_bytes()).entries:
            for code in ("en", "de", "ru", None):
                doc = document_of(entry.title, entry.summary, code)
                body = [w[:MAX_WORD_CHARS] for w in document_of(None, entry.summary, None).text]
                expected = body if code is None else stem_words(body, code)
                assert doc.text == expected
    long = ["x" * 300 + "ing", "running", "running"]
    assert index_tokens(long, "en") == stem_words(
        ["x" * MAX_WORD_CHARS, "running", "running"], "en"
    )


def test_the_stem_memo_keeps_words_cut() -> None:
    """A feed's very long tokens (hex blobs, broken markup) are remembered cut to
    MAX_WORD_CHARS, as they are indexed: the memo must not hold 100 KB words whole."""
    long_words = [f"{i:06d}" + "a" * 100_000 for i in range(20)]
    tokens = index_tokens(long_words, "en")
    assert tokens == stem_words([w[:MAX_WORD_CHARS] for w in long_words], "en")
    assert max(len(key) for key in stemming._memo("en")) <= MAX_WORD_CHARS


def test_every_transactions_statements_compile_once(engine: Engine) -> None:
    """The writer's statements of every transaction (a poll's deferred source state, inserts
    that ignore conflicts) are one object each, so their compiled form is reused: a second
    transaction compiles nothing new (and fills no cache entry that would push out others)."""
    with session_scope(engine) as session:
        source_id = ensure_source(session, "feeds").id
        assert source_id is not None
        matches = insert_ignoring_conflicts(session, MATCHES, [MATCHES.c.article_id])
        assert insert_ignoring_conflicts(session, MATCHES, [MATCHES.c.article_id]) is matches
    misses = []
    for n in range(3):
        with session_scope(engine) as session:
            defer_update(session, table_of(Source), source_id, {"etag": f"v{n}"})
        misses.append(_compiled.cache_info().misses)
    assert misses[2] == misses[1]
    with session_scope(engine) as session:
        assert session.get(Source, source_id).etag == "v2"  # type: ignore[union-attr]
