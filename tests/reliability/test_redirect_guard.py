"""A configured source's redirect is a discovered URL: the private-network guard applies at
every hop, and a permanent redirect never moves a source where the guard would not go.

The source lives on `localhost`; the "internal" server on 127.0.0.2, another host that is
also private (tests may only use 127.0.0.0/8).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from sqlmodel import Session, func, select

from newswatch.config import FileConfig, Settings, SourceConfig
from newswatch.service import Service
from newswatch.store.models import Article, Fetch, Source
from tests.localserver import LocalServer, static

SECRET_FEED = (Path(__file__).parents[1] / "fixtures" / "poll" / "guardian.rss").read_bytes()


@pytest.fixture
def internal() -> Iterator[LocalServer]:
    """A server on another loopback host, standing in for an internal service."""
    with LocalServer(host="127.0.0.2") as srv:
        srv.routes["/secret.xml"] = static(SECRET_FEED)
        yield srv


def redirect_to(location: str, status: int):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": location})

    return handler


def run_once(engine, sources: list[SourceConfig]) -> list:  # type: ignore[no-untyped-def]
    settings = Settings(NEWSWATCH_HTTP_MIN_HOST_DELAY=0)  # type: ignore[call-arg]
    return asyncio.run(Service(engine, FileConfig(sources=sources), settings).run_once())


def stored(engine) -> tuple[Source, int]:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return s.exec(select(Source)).one(), s.exec(select(func.count()).select_from(Article)).one()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_of_a_configured_source_to_another_private_host_is_refused(
    engine, server, internal, status
):
    server.routes["/feed"] = redirect_to(internal.url("/secret.xml"), status)
    url = f"http://localhost:{server.port}/feed"
    [outcome] = run_once(engine, [SourceConfig(name="s", url=url)])

    assert outcome.outcome == "blocked"
    assert "127.0.0.2" in (outcome.error or "") and "loopback" in (outcome.error or "")
    assert internal.hits("/secret.xml") == []  # never asked
    source, articles = stored(engine)
    assert source.url == url  # not moved to the internal address
    assert articles == 0
    with Session(engine) as s:
        fetch = s.exec(select(Fetch)).one()
    assert fetch.outcome == "blocked" and fetch.url == internal.url("/secret.xml")


def test_allow_private_networks_follows_and_moves_the_source(engine, server, internal):
    target = internal.url("/secret.xml")
    server.routes["/feed"] = redirect_to(target, 301)
    url = f"http://localhost:{server.port}/feed"
    cfg = SourceConfig(name="s", url=url, allow_private_networks=True)
    [outcome] = run_once(engine, [cfg])

    assert outcome.outcome == "ok" and outcome.new > 0
    source, articles = stored(engine)
    assert source.url == target and articles == outcome.new


def test_a_source_moved_to_a_private_host_before_the_guard_is_refused_there(
    engine, server, internal
):
    """A store written before the guard held a source moved to an internal address: the
    guard trusts the configured URL's host, not the address a redirect left behind."""
    url = f"http://localhost:{server.port}/feed"
    server.routes["/feed"] = static(SECRET_FEED)
    run_once(engine, [SourceConfig(name="s", url=url)])
    with Session(engine) as s:
        source = s.exec(select(Source)).one()
        source.url = internal.url("/secret.xml")
        s.add(source)
        s.commit()

    [outcome] = run_once(engine, [SourceConfig(name="s", url=url)])
    assert outcome.outcome == "blocked"
    assert internal.hits("/secret.xml") == []


def test_a_redirect_on_the_sources_own_host_is_still_followed_and_kept(engine, server):
    server.routes["/old"] = redirect_to("/new", 301)
    server.routes["/new"] = static(SECRET_FEED)
    url = f"http://localhost:{server.port}/old"
    [outcome] = run_once(engine, [SourceConfig(name="s", url=url)])
    assert outcome.outcome == "ok"
    source, _ = stored(engine)
    assert source.url == f"http://localhost:{server.port}/new"
