"""Issue 14 item 1: a host with more sources than its politeness gap allows in a fetch's
deadline. Every source is fetched, in turn and late, none reported as a timeout; the wait is
recorded per source. (The gate itself over hours of a saturated host: tests/test_host_gate.py.)
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time

from aiohttp import web
from sqlmodel import Session, select

from newswatch.config import FileConfig, Settings, SourceConfig
from newswatch.fetch import http
from newswatch.metrics import REGISTRY
from newswatch.service import Service
from newswatch.store.models import Fetch, Source

FEED = b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title></channel></rss>"
SOURCES = 40
GAP = 0.05


def test_one_pass_over_a_saturated_host_fetches_every_source_without_timeouts(engine, server):
    arrivals: list[float] = []

    async def feed(request: web.Request) -> web.StreamResponse:
        arrivals.append(time.monotonic())
        return web.Response(body=FEED, content_type="application/rss+xml")

    for n in range(SOURCES):
        server.routes[f"/feed/{n}"] = feed
    settings = Settings(  # type: ignore[call-arg]
        NEWSWATCH_HTTP_MIN_HOST_DELAY=GAP,
        # A deadline of 0.6 s, where the last of 40 sources waits 2 s for its turn.
        NEWSWATCH_HTTP_CONNECT_TIMEOUT=0.2,
        NEWSWATCH_HTTP_READ_TIMEOUT=0.2,
    )
    sources = [SourceConfig(name=f"s{n}", url=server.url(f"/feed/{n}")) for n in range(SOURCES)]
    waits_before = REGISTRY.get_sample_value("newswatch_host_queue_seconds_count") or 0
    outcomes = asyncio.run(Service(engine, FileConfig(sources=sources), settings).run_once())
    assert [o.outcome for o in outcomes] == [http.OK] * SOURCES
    assert len(arrivals) == SOURCES
    # The gate keeps the gap between starts exactly (the fake-clock tests); what the server
    # logs adds jitter (a first connection, a loaded machine), so the span and the typical
    # gap are checked: one gap of slack for the first connection.
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert arrivals[-1] - arrivals[0] >= (SOURCES - 2) * GAP
    assert statistics.median(gaps) >= 0.9 * GAP
    with Session(engine) as s:
        assert s.exec(select(Fetch).where(Fetch.outcome == http.TIMEOUT)).all() == []
        waits = sorted(w or 0.0 for w in s.exec(select(Source.host_wait_seconds)).all())
    # The lag is recorded: the last source waited about 39 gaps for its turn; /metrics has
    # every wait.
    assert waits[-1] >= (SOURCES - 2) * GAP
    waits_after = REGISTRY.get_sample_value("newswatch_host_queue_seconds_count") or 0
    assert waits_after - waits_before == SOURCES
