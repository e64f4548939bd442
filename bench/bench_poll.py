"""Polling throughput against a farm of feeds on 127.0.0.1.

    python bench/bench_poll.py [--feeds 2000] [--concurrency 50]

(a) every feed unchanged (304) and (b) every feed changed (20 new entries each), through the
whole pipeline (fetch, parse, store, record), in feeds/s, compared in the same run with
- the bare client: the same Fetcher, same server, same concurrency, no parsing or storing;
- feedparser alone on the same bodies.
Also compares httpx's own transport with the httpx-aiohttp transport (bare client, both modes).
Targets: (a) >= 50% of the bare client's rate; (b) >= 70% of the parse-only rate.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import feedparser

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feedfarm import FeedFarm
from newswatch.config import FileConfig, Settings, SourceConfig
from newswatch.fetch.http import Fetcher
from newswatch.fetch.poll import Poller
from newswatch.log import configure_logging
from newswatch.pipeline import Pipeline
from newswatch.store.db import open_store, session_scope
from newswatch.store.sources import SourceSnapshot, schedulable_sources, sync_config_sources


def settings(concurrency: int, transport: str = "aiohttp") -> Settings:
    return Settings(  # type: ignore[call-arg]
        NEWSWATCH_HTTP_MAX_CONNECTIONS=concurrency,
        NEWSWATCH_HTTP_PER_HOST_CONCURRENCY=concurrency,  # the farm stands for many hosts
        NEWSWATCH_HTTP_MIN_HOST_DELAY=0,
        NEWSWATCH_HTTP_TRANSPORT=transport,
        NEWSWATCH_LOG_LEVEL="WARNING",
    )


async def gather_limited(n: int, coros) -> list:  # type: ignore[no-untyped-def]
    limit = asyncio.Semaphore(n)

    async def one(c):  # type: ignore[no-untyped-def]
        async with limit:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def poll_all(poller: Poller, sources: list[SourceSnapshot], n: int) -> list:
    return await gather_limited(n, (poller.poll(s) for s in sources))


async def bare(fetcher: Fetcher, urls: list[str], etags: list[str | None], n: int) -> list:
    return await gather_limited(
        n, (fetcher.get(u, etag=e) for u, e in zip(urls, etags, strict=True))
    )


def load(engine) -> list[SourceSnapshot]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return sorted(schedulable_sources(s), key=lambda x: x.id)


# The foundation's pipeline (fetch, parse, store, record) and the whole one with grouping.
PLAIN = FileConfig(grouping={"enabled": False})  # type: ignore[arg-type]
GROUPED = FileConfig()


async def pipeline_pass(
    engine, cfg: Settings, n: int, config: FileConfig = PLAIN
) -> tuple[float, list]:  # type: ignore[no-untyped-def]
    sources = load(engine)
    async with (
        Fetcher(cfg) as fetcher,
        Poller(fetcher, Pipeline(engine, config, cfg), cfg) as poller,
    ):
        # Start the parser processes before timing (they start on the second parallel parse).
        await asyncio.gather(
            *(poller.run_cpu(time.sleep, 0.2) for _ in range(cfg.parse_workers + 1))
        )
        started = time.perf_counter()
        outcomes = await poll_all(poller, sources, n)
        return time.perf_counter() - started, outcomes


async def bare_pass(urls, etags, cfg: Settings, n: int) -> tuple[float, list]:  # type: ignore[no-untyped-def]
    async with Fetcher(cfg) as fetcher:
        started = time.perf_counter()
        results = await bare(fetcher, urls, etags, n)
        return time.perf_counter() - started, results


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--feeds", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=50)
    args = ap.parse_args()
    configure_logging("WARNING")
    n, feeds = args.concurrency, args.feeds
    cfg = settings(n)
    tmp = tempfile.mkdtemp()
    engine = open_store(f"sqlite:///{tmp}/bench.db")
    with FeedFarm(feeds) as farm:
        urls = [farm.url(i) for i in range(feeds)]
        with session_scope(engine) as s:
            sync_config_sources(
                s, [SourceConfig(name=f"farm-{i}", url=u) for i, u in enumerate(urls)]
            )
        warm, outcomes = asyncio.run(pipeline_pass(engine, cfg, n))
        assert all(o.outcome == "ok" for o in outcomes), {o.outcome for o in outcomes}
        print(
            f"first pass (all new): {rate(feeds, warm):.0f} feeds/s, "
            f"{sum(o.new for o in outcomes)} articles stored"
        )

        # (a) unchanged: everything answers 304.
        etags = [s.etag for s in load(engine)]
        t_pipe, outcomes = asyncio.run(pipeline_pass(engine, cfg, n))
        assert all(o.outcome == "not_modified" for o in outcomes)
        t_bare, results = asyncio.run(bare_pass(urls, etags, cfg, n))
        assert all(r.status == 304 for r in results)
        a_pipe, a_bare = rate(feeds, t_pipe), rate(feeds, t_bare)
        print(
            f"(a) unchanged: pipeline {a_pipe:.0f} feeds/s, bare client {a_bare:.0f} feeds/s, "
            f"ratio {a_pipe / a_bare:.2f} (target >= 0.50)"
        )

        # (b) changed: 20 new entries in every feed.
        farm.bump()
        t_pipe, outcomes = asyncio.run(pipeline_pass(engine, cfg, n))
        assert all(o.outcome == "ok" and o.new == 20 for o in outcomes), outcomes[:3]
        _t, results = asyncio.run(bare_pass(urls, [None] * feeds, cfg, n))
        bodies = [r.body for r in results]
        started = time.perf_counter()
        for body in bodies:
            feedparser.parse(body)
        t_parse = time.perf_counter() - started
        b_pipe, b_parse = rate(feeds, t_pipe), rate(feeds, t_parse)
        print(
            f"(b) changed: pipeline {b_pipe:.0f} feeds/s ({b_pipe * 20:.0f} articles/s), "
            f"feedparser alone {b_parse:.0f} feeds/s, ratio {b_pipe / b_parse:.2f} "
            "(target >= 0.70)"
        )
        # (b') the same with event grouping of every new article (issue 4) in the pipeline.
        farm.bump()
        t_grouped, outcomes = asyncio.run(pipeline_pass(engine, cfg, n, GROUPED))
        assert all(o.outcome == "ok" and o.new == 20 for o in outcomes), outcomes[:3]
        g_pipe = rate(feeds, t_grouped)
        print(
            f"(b') changed, with grouping: {g_pipe:.0f} feeds/s ({g_pipe * 20:.0f} articles/s), "
            f"ratio to feedparser alone {g_pipe / b_parse:.2f}"
        )

        # Transports, bare client, same server and concurrency.
        for transport in ("httpx", "aiohttp"):
            tcfg = settings(n, transport)
            t304, _ = asyncio.run(bare_pass(urls, etags, tcfg, n))
            t200, _ = asyncio.run(bare_pass(urls, [None] * feeds, tcfg, n))
            print(
                f"transport {transport:8} at {n} connections: 304s {rate(feeds, t304):.0f} req/s, "
                f"200s {rate(feeds, t200):.0f} req/s"
            )


if __name__ == "__main__":
    main()
