"""Language and index tokens derived in a parse worker (fetch/prepare.py, decision 0227): for
the entries a source did not carry at its previous poll only, equal to what the writer
derives, used by the store only while the entry's fields are what they were derived from."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from newswatch.fetch.feeds import parse_feed
from newswatch.fetch.http import FetchResult
from newswatch.fetch.language import language_of
from newswatch.fetch.poll import FeedReader
from newswatch.fetch.prepare import entry_key, parse_feed_prepared, prepare_text
from newswatch.shared_types import FetchOutcome, ParsedEntry, PreparedText
from newswatch.store.articles import admit_entries, ensure_source, store_batch
from newswatch.store.db import session_scope
from newswatch.store.search import index_articles
from newswatch.store.sources import SourceSnapshot
from newswatch.store.stemming import MAX_WORD_CHARS, document_of, index_tokens, stem_words
from tests.conftest import SHARED_DATA

FEEDS = SHARED_DATA / "feeds"
# Real feeds in German, Russian, Portuguese, Italian and English (tests/test_language.py),
# and an Atom feed with xml:lang declarations.
REAL_FEEDS = [
    "rss-parser/test/input/heise.atom",
    "node-feedparser/test/feeds/iconv.xml",
    "feed-rs/fixture/rss2/rss_2.0_spiegel.xml",
    "rss-parser/test/input/encoding.rss",
    "feed-rs/fixture/rss2/rss_2.0_ilgiornale.xml",
    "rss-parser/test/input/reddit.rss",
    "rss-parser/test/input/feedburner.atom",
]


@pytest.fixture(scope="module")
def workers() -> Iterator[ProcessPoolExecutor]:
    """Parse workers as the poller starts them (spawned processes)."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def _in_worker(pool: ProcessPoolExecutor, body: bytes, previous: bytes | None = None) -> Any:
    return pool.submit(
        parse_feed_prepared, body, url="https://feed.example/", previous=previous
    ).result()


def _rss(items: list[tuple[str, str]]) -> bytes:
    entries = "".join(
        f"<item><guid>{guid}</guid><title>{title}</title>"
        f"<description>{title}, said the minister of finance on Monday.</description></item>"
        for guid, title in items
    )
    return f"<rss version='2.0'><channel><title>t</title>{entries}</channel></rss>".encode()


def _index_rows(engine: Engine) -> dict[int, tuple[Any, ...]]:
    with session_scope(engine) as session:
        if session.get_bind().dialect.name == "postgresql":
            query = "SELECT article_id, document::text FROM article_search"
        else:
            query = "SELECT rowid, title, text, lang FROM article_search"
        return {row[0]: tuple(row[1:]) for row in session.execute(text(query))}


def test_the_workers_results_are_the_writers(engine: Engine, workers: ProcessPoolExecutor) -> None:
    """Entries of real feeds in five languages parsed and prepared in a worker process, then
    stored: each stored language (and how it is known) is what the writer's language_of gives,
    and each index row what the store writes when it derives it itself (a rebuild)."""
    entries: list[ParsedEntry] = []
    for path in REAL_FEEDS:
        parsed, _keys = _in_worker(workers, (FEEDS / path).read_bytes())
        assert parsed.entries and all(e.prepared is not None for e in parsed.entries), path
        entries += parsed.entries
    admitted, _rejected = admit_entries(entries)
    with session_scope(engine) as session:
        source = ensure_source(session, "feeds")
        stored = store_batch(session, [(source, e) for e in admitted], language_of=language_of)
    by_prepared = _index_rows(engine)
    assert len(by_prepared) == len({a.id for a in stored if a.is_new}) > 100
    languages = {a.language for a in stored}
    assert {"de", "ru", "pt", "it", "en"} <= languages
    for article, entry in zip(stored, admitted, strict=True):
        if article.is_new:
            assert article.language == language_of(replace(entry, prepared=None))[0]
    with session_scope(engine) as session:
        index_articles(session, rebuild=True)  # the writer derives every row itself
    assert _index_rows(engine) == by_prepared


def test_only_entries_not_in_the_previous_poll_are_prepared(workers: ProcessPoolExecutor) -> None:
    first = _rss([(f"g{n}", f"Parliament approves the budget for year {n}") for n in range(5)])
    parsed, keys = _in_worker(workers, first)
    assert [e.prepared is not None for e in parsed.entries] == [True] * 5
    assert keys == b"".join(entry_key(e) for e in parsed.entries)
    # The next poll: one entry gone, one new at the top.
    second = _rss(
        [("g9", "Central bank raises interest rates again")]
        + [(f"g{n}", f"Parliament approves the budget for year {n}") for n in range(4)]
    )
    parsed, _keys = _in_worker(workers, second, previous=keys)
    assert [e.prepared is not None for e in parsed.entries] == [True, False, False, False, False]
    new = parsed.entries[0]
    assert new.prepared == prepare_text(replace(new, prepared=None))
    assert new.prepared.language == "en"


def test_the_main_process_prepares_nothing() -> None:
    """A lone parse runs in a thread of the main process: preparing there would cost the
    writer's process what the store derives for new articles anyway, and more."""
    parsed, keys = parse_feed_prepared(_rss([("g1", "Parliament approves the new budget")]))
    assert len(keys) == 8 and parsed.entries[0].prepared is None


def _entry(title: str) -> ParsedEntry:
    return ParsedEntry(
        url=f"https://news.example/{abs(hash(title))}",
        title=title,
        summary="The parliament approved the budget on Monday after a long debate.",
    )


def _bogus(entry: ParsedEntry) -> PreparedText:
    """Derived 'results' no function would give: used only if the store takes them."""
    return PreparedText(entry.text_basis(), "xx", "detected", "bogus", "tokens")


def test_the_store_uses_prepared_text_only_for_the_fields_it_came_from(engine: Engine) -> None:
    asked: list[str | None] = []

    def counting(entry: ParsedEntry) -> tuple[str | None, str | None]:
        asked.append(entry.title)
        return language_of(entry)

    kept = _entry("Parliament approves the budget")
    kept.prepared = _bogus(kept)
    changed = _entry("Budget vote delayed")
    changed.prepared = _bogus(changed)
    changed.text = "A full text fetched after parsing, in English as it happens."
    cleaned = _entry("Budget\x07 passes the senate")  # admit_entries removes the control code
    cleaned.prepared = _bogus(cleaned)
    admitted, _rejected = admit_entries([kept, changed, cleaned])
    with session_scope(engine) as session:
        source = ensure_source(session, "s")
        stored = store_batch(session, [(source, e) for e in admitted], language_of=counting)
    assert [a.language for a in stored] == ["xx", "en", "en"]
    assert asked == ["Budget vote delayed", "Budget passes the senate"]
    rows = _index_rows(engine)
    postgres = engine.dialect.name == "postgresql"
    held = [" ".join(str(v) for v in rows[a.id]) for a in stored]
    assert ["bogus" in row for row in held] == [True, False, False], held
    if not postgres:
        assert rows[stored[1].id][0] == "en\u00a6budget en\u00a6vote en\u00a6delay"


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
    long = ["x" * 300 + "ing", "running"]
    assert index_tokens(long, "en") == stem_words(["x" * MAX_WORD_CHARS, "running"], "en")


class _Pool:
    """What FeedReader uses of the poller: run_cpu in real worker processes."""

    def __init__(self, pool: ProcessPoolExecutor):
        self.pool = pool

    async def run_cpu(self, fn: Any, *args: object, **kwargs: object) -> Any:
        return self.pool.submit(fn, *args, **kwargs).result()


def _snapshot(source_id: int, **options: object) -> SourceSnapshot:
    return SourceSnapshot(
        id=source_id,
        name=f"s{source_id}",
        url="http://x/",
        configured_url="http://x/",
        kind="feed",
        etag=None,
        last_modified=None,
        consecutive_errors=0,
        interval=timedelta(minutes=15),
        cron=None,
        options=dict(options),
        next_fetch_at=None,
        enabled=True,
    )


def test_the_feed_reader_remembers_each_sources_previous_poll(
    workers: ProcessPoolExecutor,
) -> None:
    reader, poller = FeedReader(), _Pool(workers)
    items = [(f"g{n}", f"Parliament approves the budget for year {n}") for n in range(3)]

    def read(source: SourceSnapshot, body: bytes) -> list[bool]:
        result = FetchResult(
            url="http://x/", final_url="http://x/", outcome=FetchOutcome.OK, body=body
        )
        got = asyncio.run(reader.read(poller, source, result))  # type: ignore[arg-type]
        return [e.prepared is not None for e in got.entries]

    assert read(_snapshot(1), _rss(items)) == [True, True, True]
    assert read(_snapshot(1), _rss([("g7", "Storm closes the airport"), *items])) == [
        True,
        False,
        False,
        False,
    ]
    assert read(_snapshot(2), _rss(items)) == [True, True, True]  # another source's memory
    # Full text replaces the text after parsing: nothing is prepared for it.
    assert read(_snapshot(3, full_text=True), _rss(items)) == [False, False, False]
