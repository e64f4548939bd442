"""The registry of source kinds and the steps after reading (fetch/source_kinds.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from sqlmodel import Session, select

from newswatch.config import FileConfig, Settings, SourceConfig
from newswatch.errors import RegistryError
from newswatch.fetch.http import Fetcher, FetchResult, URLCheck
from newswatch.fetch.page_sources import FullTextStep, PageReader, PageSupport, register
from newswatch.fetch.poll import FeedReader, Poller
from newswatch.fetch.sitemaps import SitemapReader
from newswatch.fetch.source_kinds import BodyResult, PollContext, SourceKinds
from newswatch.pipeline import Pipeline
from newswatch.shared_types import FetchOutcome, ParsedEntry, SourceKind
from newswatch.store.db import session_scope
from newswatch.store.models import Article, Source
from newswatch.store.sources import SourceSnapshot, add_source
from tests.localserver import LocalServer, static

RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
SITEMAP = b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"/>'
HTML = b"<!DOCTYPE html><html><head><title>x</title></head><body></body></html>"


def settings() -> Settings:
    return Settings(NEWSWATCH_HTTP_MIN_HOST_DELAY=0, NEWSWATCH_PARSE_WORKERS=0)  # type: ignore[call-arg]


def body(data: bytes) -> FetchResult:
    return FetchResult(url="http://x/", final_url="http://x/", outcome=FetchOutcome.OK, body=data)


def snapshot(kind: str = "auto", **options: object) -> SourceSnapshot:
    from datetime import timedelta

    return SourceSnapshot(
        id=1,
        name="s",
        url="http://x/",
        configured_url="http://x/",
        kind=kind,
        etag=None,
        last_modified=None,
        consecutive_errors=0,
        interval=timedelta(minutes=15),
        cron=None,
        options=dict(options),
        next_fetch_at=None,
        enabled=True,
    )


@dataclass
class ListReader:
    """A reader that finds the entries it was made with (a kind a plug-in could add)."""

    kind: SourceKind
    entries: list[str]
    marker: bytes = b"<list"
    read_count: int = 0

    def detects(self, result: FetchResult) -> bool:
        return result.body.startswith(self.marker)

    def own_checks(self, source: SourceSnapshot) -> list[URLCheck]:
        return []

    async def read(
        self, poller: PollContext, source: SourceSnapshot, result: FetchResult
    ) -> BodyResult:
        self.read_count += 1
        return BodyResult(entries=[ParsedEntry(url=u, title=u) for u in self.entries])


@dataclass
class MarkStep:
    """A step that appends its name to every entry's title, for the kinds it applies to."""

    name: str
    applies_to: frozenset[SourceKind]
    calls: list[str] = field(default_factory=list)

    async def process(self, poller: PollContext, source: SourceSnapshot, body: BodyResult) -> None:
        self.calls.append(source.name)
        for entry in body.entries:
            entry.title = f"{entry.title}+{self.name}"


def test_a_kind_or_step_registered_twice_is_an_error_and_the_first_stays() -> None:
    first = ListReader(SourceKind.PAGE, ["a"])
    kinds = SourceKinds([first])
    with pytest.raises(RegistryError, match="kind 'page' is registered already"):
        kinds.register(ListReader(SourceKind.PAGE, ["b"]))
    assert kinds.reader(SourceKind.PAGE) is first
    kinds.add_step(MarkStep("x", frozenset({SourceKind.PAGE})))
    with pytest.raises(RegistryError, match="step named 'x' is registered already"):
        kinds.add_step(MarkStep("x", frozenset({SourceKind.FEED})))


def test_an_unregistered_kind_is_an_error_not_the_feed_reader() -> None:
    kinds = SourceKinds([FeedReader()])
    with pytest.raises(RegistryError, match="no reader for kind 'sitemap'"):
        kinds.handler_for(snapshot("sitemap"), body(SITEMAP))


def test_auto_asks_the_readers_then_the_kind_found_before_then_feed() -> None:
    kinds = SourceKinds([FeedReader(), ListReader(SourceKind.PAGE, [], marker=b"<!DOCTYPE")])
    assert kinds.kind_of(snapshot(), body(RSS)) == SourceKind.FEED
    assert kinds.kind_of(snapshot(), body(HTML)) == SourceKind.PAGE
    # Nothing recognises the body: the kind an earlier poll found, if it is registered.
    assert kinds.kind_of(snapshot(detected_kind="page"), body(b"???")) == SourceKind.PAGE
    assert kinds.kind_of(snapshot(detected_kind="sitemap"), body(b"???")) == SourceKind.FEED
    assert kinds.kind_of(snapshot(), body(b"???")) == SourceKind.FEED
    # A configured kind is taken as it is.
    assert kinds.kind_of(snapshot("page"), body(RSS)) == SourceKind.PAGE


def test_steps_run_after_the_reader_in_order_only_for_their_kinds() -> None:
    kinds = SourceKinds(
        [ListReader(SourceKind.FEED, ["u1", "u2"]), ListReader(SourceKind.PAGE, ["p"])]
    )
    first = MarkStep("one", frozenset({SourceKind.FEED}))
    second = MarkStep("two", frozenset({SourceKind.FEED, SourceKind.PAGE}))
    kinds.add_step(first)
    kinds.add_step(second)
    poller: PollContext = None  # type: ignore[assignment]  # the readers and steps use none

    def titles(kind: str) -> list[str | None]:
        source = snapshot(kind)
        handler = kinds.handler_for(source, body(b""))
        result = asyncio.run(handler(poller, source, body(b"")))
        return [e.title for e in result.entries]

    assert titles("feed") == ["u1+one+two", "u2+one+two"]
    assert titles("page") == ["p+two"]


def test_steps_do_not_run_when_the_reader_found_nothing() -> None:
    kinds = SourceKinds([ListReader(SourceKind.FEED, [])])
    step = MarkStep("one", frozenset({SourceKind.FEED}))
    kinds.add_step(step)
    handler = kinds.handler_for(snapshot("feed"), body(b""))
    asyncio.run(handler(None, snapshot("feed"), body(b"")))  # type: ignore[arg-type]
    assert step.calls == []


def test_registering_pages_keeps_the_feed_reader_and_cannot_happen_twice(engine) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        async with Fetcher(settings()) as fetcher:
            poller = Poller(fetcher, Pipeline(engine, FileConfig(), settings()), settings())
            try:
                register(poller)
                assert isinstance(poller.kinds.reader(SourceKind.FEED), FeedReader)
                assert isinstance(poller.kinds.reader(SourceKind.PAGE), PageReader)
                assert isinstance(poller.kinds.reader(SourceKind.SITEMAP), SitemapReader)
                with pytest.raises(RegistryError):
                    register(poller)
                # Full text is a step after the feed reader, not a second feed reader.
                support = PageSupport(poller)
                with pytest.raises(RegistryError, match="full_text"):
                    poller.kinds.add_step(FullTextStep(support))
            finally:
                await poller.aclose()

    asyncio.run(go())


def test_a_poll_reads_the_body_with_the_registered_reader(engine, server: LocalServer) -> None:  # type: ignore[no-untyped-def]
    """A kind registered by a plug-in is what the poller uses for sources of that kind."""
    server.routes["/list"] = static(b"<list/>", content_type="text/plain")
    reader = ListReader(SourceKind.PAGE, ["https://example.org/a", "https://example.org/b"])
    with session_scope(engine) as session:
        add_source(session, SourceConfig(name="listed", url=server.url("/list"), kind="page"))

    async def go() -> None:
        async with Fetcher(settings()) as fetcher:
            poller = Poller(fetcher, Pipeline(engine, FileConfig(), settings()), settings())
            try:
                poller.kinds.register(reader)
                with Session(engine) as session:
                    [source] = session.exec(select(Source)).all()
                    snap = SourceSnapshot.of(source)
                outcome = await poller.poll(snap)
                assert (outcome.outcome, outcome.entries, outcome.new) == ("ok", 2, 2)
            finally:
                await poller.aclose()

    asyncio.run(go())
    assert reader.read_count == 1
    with Session(engine) as session:
        urls = sorted(a.url or "" for a in session.exec(select(Article)).all())
    assert urls == ["https://example.org/a", "https://example.org/b"]
