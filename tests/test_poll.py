"""Polling end to end: a local feed server, the service's one pass, the store (SQLite and
Postgres)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog.testing
from aiohttp import web
from sqlmodel import Session, func, select

from newswatch.config import FileConfig, Settings, SourceConfig
from newswatch.service import Service
from newswatch.store.models import Article, Fetch, Sighting, Source
from tests.localserver import conditional, static

FIXTURES = Path(__file__).parent / "fixtures" / "poll"
GUARDIAN = (FIXTURES / "guardian.rss").read_bytes()
HEISE = (FIXTURES / "heise.atom").read_bytes()


def settings() -> Settings:
    return Settings(NEWSWATCH_HTTP_MIN_HOST_DELAY=0, NEWSWATCH_HTTP_READ_TIMEOUT=15)  # type: ignore[call-arg]


def service(engine, sources: list[SourceConfig]) -> Service:
    return Service(engine, FileConfig(sources=sources), settings())


def count(session: Session, model, *where) -> int:  # type: ignore[no-untyped-def]
    query = select(func.count()).select_from(model)
    for clause in where:
        query = query.where(clause)
    return session.exec(query).one()


def test_one_pass_fills_the_store_and_the_second_is_conditional(engine, server):
    server.routes["/guardian"] = conditional(GUARDIAN, etag='"g1"')
    server.routes["/heise"] = conditional(
        HEISE, last_modified="Mon, 02 Mar 2026 10:00:00 GMT", content_type="application/atom+xml"
    )
    cfg = [
        SourceConfig(name="guardian", url=server.url("/guardian")),
        SourceConfig(name="heise", url=server.url("/heise")),
    ]
    first = asyncio.run(service(engine, cfg).run_once())
    assert sorted(o.outcome for o in first) == ["ok", "ok"]
    with Session(engine) as s:
        stored = count(s, Article)
        assert stored == sum(o.new for o in first) > 50
        guardian = s.exec(select(Source).where(Source.name == "guardian")).one()
        assert guardian.etag == '"g1"' and guardian.consecutive_errors == 0
        assert guardian.title
        assert count(s, Article, Article.title == None) == 0  # noqa: E711

    second = asyncio.run(service(engine, cfg).run_once())
    assert sorted(o.outcome for o in second) == ["not_modified", "not_modified"]
    assert server.hits("/guardian")[-1].headers.get("If-None-Match") == '"g1"'
    assert server.hits("/heise")[-1].headers.get("If-Modified-Since")
    with Session(engine) as s:
        assert count(s, Article) == stored
        assert count(s, Fetch, Fetch.outcome == "not_modified") == 2


def test_unconditional_server_stores_nothing_twice(engine, server):
    server.routes["/feed"] = static(GUARDIAN)
    cfg = [SourceConfig(name="g", url=server.url("/feed"))]
    first = asyncio.run(service(engine, cfg).run_once())
    second = asyncio.run(service(engine, cfg).run_once())
    assert first[0].new > 0 and second[0].new == 0
    with Session(engine) as s:
        assert count(s, Article) == first[0].new
        assert count(s, Sighting) == first[0].new


def test_same_article_in_two_feeds_is_one_article_with_two_sightings(engine, server):
    server.routes["/a"] = static(GUARDIAN)
    # The same feed again, under tracking parameters and another host spelling.
    tracked = GUARDIAN.replace(b"?CMP=", b"?utm_source=rss&CMP=").replace(
        b"https://www.theguardian.com", b"https://WWW.theguardian.com"
    )
    server.routes["/b"] = static(tracked)
    cfg = [
        SourceConfig(name="a", url=server.url("/a")),
        SourceConfig(name="b", url=server.url("/b")),
    ]
    outcomes = asyncio.run(service(engine, cfg).run_once())
    with Session(engine) as s:
        articles = count(s, Article)
        assert articles == max(o.entries for o in outcomes)
        assert count(s, Sighting) == 2 * articles


def test_failing_source_is_recorded_and_backs_off(engine, server):
    server.routes["/gone"] = static("gone", status=410)
    server.routes["/html"] = static(
        "<html><body><p>Not a feed</p></body></html>", content_type="text/html"
    )
    server.routes["/busy"] = static("busy", status=429, headers={"Retry-After": "7200"})
    cfg = [
        SourceConfig(name="gone", url=server.url("/gone"), interval="10m"),
        SourceConfig(name="html", url=server.url("/html"), kind="feed"),
        # Another spelling of the host: its Retry-After must not hold up the others.
        SourceConfig(name="busy", url=f"http://localhost:{server.port}/busy", interval="10m"),
        SourceConfig(name="down", url="http://127.0.0.1:9/feed"),
    ]
    svc = service(engine, cfg)
    for _ in range(3):
        asyncio.run(svc.run_once())
    with Session(engine) as s:
        by_name = {src.name: src for src in s.exec(select(Source)).all()}
    gone = by_name["gone"]
    assert (gone.last_status, gone.last_outcome, gone.consecutive_errors) == (410, "http_error", 3)
    assert gone.enabled and gone.next_fetch_at is not None
    assert by_name["html"].last_outcome == "parse_error" and by_name["html"].last_error
    busy = by_name["busy"]
    assert busy.last_outcome == "rate_limited"
    assert (busy.next_fetch_at - busy.last_fetch_at).total_seconds() >= 7200
    assert by_name["down"].last_outcome == "network_error"


def test_permanent_redirect_updates_the_stored_url(engine, server):
    async def moved(request: web.Request) -> web.StreamResponse:
        return web.Response(status=301, headers={"Location": "/new-home"})

    server.routes["/old-home"] = moved
    server.routes["/new-home"] = static(HEISE, content_type="application/atom+xml")
    cfg = [SourceConfig(name="h", url=server.url("/old-home"))]
    asyncio.run(service(engine, cfg).run_once())
    with Session(engine) as s:
        source = s.exec(select(Source)).one()
        assert source.url == server.url("/new-home")
        assert source.configured_url == server.url("/old-home")
    asyncio.run(service(engine, cfg).run_once())
    assert len(server.hits("/old-home")) == 1  # the second pass went straight to the new URL


def test_the_fetch_log_line_is_a_warning_when_a_source_fails(sqlite_engine, server):
    """NEWSWATCH_LOG_LEVEL=WARNING shows the failing sources only; a 410 is an error."""
    server.routes["/ok"] = static(GUARDIAN)
    server.routes["/broken"] = static("oops", status=500)
    server.routes["/gone"] = static("gone", status=410)
    server.routes["/junk"] = static("no feed here", content_type="application/rss+xml")
    cfg = [SourceConfig(name=n, url=server.url(f"/{n}")) for n in ("ok", "broken", "gone", "junk")]
    with structlog.testing.capture_logs() as logs:
        asyncio.run(service(sqlite_engine, cfg).run_once())
    levels = {e["source"]: e["log_level"] for e in logs if e["event"] == "fetch"}
    assert levels == {"ok": "info", "broken": "warning", "gone": "error", "junk": "warning"}


def test_without_worker_processes_parses_run_one_at_a_time() -> None:
    """lxml and trafilatura aborted the process when page extractions ran in several threads
    at once: without worker processes, CPU work runs in one thread."""
    import threading
    import time

    from newswatch.fetch.poll import Poller

    lock = threading.Lock()
    running: list[int] = [0]
    most: list[int] = [0]

    def parse(n: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)  # long enough for the others to start, were they allowed to
        with lock:
            running[0] -= 1
        return n

    async def main() -> list[int]:
        settings = Settings(_env_file=None, NEWSWATCH_PARSE_WORKERS=0)  # type: ignore[call-arg]
        poller = Poller(None, None, settings)  # type: ignore[arg-type]
        try:
            return await asyncio.gather(*(poller.run_cpu(parse, n) for n in range(6)))
        finally:
            await poller.aclose()

    assert asyncio.run(main()) == list(range(6))
    assert most[0] == 1
