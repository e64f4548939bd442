"""A farm of RSS feeds on 127.0.0.1 for benchmarks: N feeds, each with an ETag; bump the
generation and every feed has 20 new entries. With `hosts` > 1 the feeds are served on that
many loopback ports, feed i on port i % hosts: to a client each port is a host of its own
(its own politeness gate), so a benchmark can keep politeness on without one host's gap
deciding the time.

Entries are built from real headlines and texts (../shared/data/grouping) so parsing and
storing cost what real news costs. Runs in processes of its own so the client measured does
not share its event loop.

Each server process holds a listening socket per port and, while a client keeps its
connections alive, one accepted socket per port as well: with 10,000 ports in one process
that is over 20,000 descriptors, past a usual limit, and the last connections waited in the
kernel's accept queue until they timed out (issue 17: 100 of 10,000 fetches failed). So the
ports are spread over processes of at most PORTS_PER_PROCESS each, each process raises its
descriptor limit to the hard limit, and a farm that would still not fit refuses to start
(docs/decisions/0187-feed-farm-descriptors.md).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import resource
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from shared_data import shared_corpus

ENTRIES_PER_FEED = 20
# Ports a server process listens on at most: with each port's accepted connection that is
# about twice as many descriptors, far below the usual limits.
PORTS_PER_PROCESS = 2500
# Descriptors a server process needs beyond its ports' (the event loop, pipes, the log).
SPARE_DESCRIPTORS = 64


def corpus() -> list[tuple[str, str]]:
    rows = []
    for name in ("ecbplus-dev.jsonl", "uci-headlines-dev.jsonl"):
        with shared_corpus(f"grouping/{name}").open(encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                rows.append((r["title"], (r.get("text") or r["title"])[:600]))
    return rows


def render(feed: int, generation: int, texts: list[tuple[str, str]]) -> bytes:
    rng = random.Random(feed * 1_000_003 + generation)
    base = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=generation)
    items = []
    for n in range(ENTRIES_PER_FEED):
        title, text = rng.choice(texts)
        guid = f"https://farm.example/{feed}/{generation}/{n}"
        items.append(
            f"<item><title>{escape(title)}</title><link>{guid}</link>"
            f"<guid isPermaLink='true'>{guid}</guid>"
            f"<pubDate>{format_datetime(base + timedelta(minutes=n))}</pubDate>"
            # A marker makes each entry's content unique: the pipeline would rightly store
            # repeated texts once.
            f"<description>{escape(text)} [{feed}.{generation}.{n}]</description></item>"
        )
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
        f"<title>Farm feed {feed}</title><link>https://farm.example/{feed}</link>"
        f"<description>benchmark feed</description>{''.join(items)}</channel></rss>"
    ).encode()


def descriptors_needed(ports: int) -> int:
    """What a server process of `ports` ports may hold at once: a listening and an accepted
    socket a port, and a few more."""
    return 2 * ports + SPARE_DESCRIPTORS


def raise_descriptor_limit(needed: int) -> None:
    """The soft limit on open files up to the hard one; an error naming both when `needed`
    does not fit even so."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and needed > soft:
        raise RuntimeError(
            f"feed farm: a server process needs {needed} file descriptors, the limit is "
            f"{soft} (hard {hard}); lower PORTS_PER_PROCESS or raise the limit"
        )


def _serve(count: int, feeds: int, generation, ready, log_path, tick) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from aiohttp import web

    raise_descriptor_limit(descriptors_needed(count))
    texts = corpus()
    started = time.monotonic()
    cache: dict[tuple[int, int], bytes] = {}
    log = open(log_path, "a", buffering=1, encoding="utf-8") if log_path else None  # noqa: SIM115

    async def handler(request: web.Request) -> web.Response:
        feed = int(request.match_info["n"])
        if log is not None:
            log.write(f"{time.time():.6f} {feed}\n")  # when each request arrived, for a bench
        if feed >= feeds:
            return web.Response(status=404)
        # With a tick the generation follows the clock: 20 new entries every `tick` seconds.
        gen = int((time.monotonic() - started) // tick) if tick else generation.value
        etag = f'"{feed}-{gen}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        body = cache.get((feed, gen))
        if body is None:
            body = cache[(feed, gen)] = render(feed, gen, texts)
        return web.Response(
            body=body, headers={"ETag": etag, "Content-Type": "application/rss+xml"}
        )

    app = web.Application()
    app.router.add_get("/feed/{n}", handler)

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=True)
        await runner.setup()
        # Each port is chosen by the kernel as it is bound (port 0): a port picked beforehand
        # and bound later could be taken meanwhile (by any outgoing connection).
        ports = []
        for _ in range(count):
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
            await site.start()
            ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        ready.send(ports)
        await asyncio.Event().wait()  # until the process is terminated

    asyncio.run(serve())


class FeedFarm:
    """`with FeedFarm(2000) as farm: farm.url(i); farm.bump()`

    With `log_path`, the farm appends "<unix time> <feed number>" for every request it gets;
    with `tick` the feeds change by themselves every `tick` seconds."""

    def __init__(
        self,
        feeds: int,
        log_path: Path | None = None,
        tick: float | None = None,
        hosts: int = 1,
    ):
        self.feeds = feeds
        self.log_path = log_path
        self.tick = tick
        self.hosts = max(1, min(hosts, feeds))
        self.ports: list[int] = []  # known once the farm runs
        self._generation = mp.Value("i", 0)
        self._procs: list[mp.Process] = []

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.ports[n % len(self.ports)]}/feed/{n}"

    def bump(self) -> None:
        """Every feed now has 20 new entries (and a new ETag)."""
        with self._generation.get_lock():
            self._generation.value += 1

    @property
    def pids(self) -> list[int]:
        """The server processes' ids (to watch their descriptors or CPU)."""
        return [p.pid for p in self._procs if p.pid is not None]

    def __enter__(self) -> FeedFarm:
        ctx = mp.get_context("spawn")
        self._generation = ctx.Value("i", 0)
        shares = [
            min(PORTS_PER_PROCESS, self.hosts - i) for i in range(0, self.hosts, PORTS_PER_PROCESS)
        ]
        readies = []
        for share in shares:
            ready, ready_child = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_serve,
                args=(share, self.feeds, self._generation, ready_child, self.log_path, self.tick),
                daemon=True,
            )
            proc.start()
            self._procs.append(proc)
            readies.append(ready)
        deadline = time.monotonic() + 120
        for proc, ready in zip(self._procs, readies, strict=True):
            while not ready.poll(1):
                if not proc.is_alive() or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(
                        f"feed farm: a server process did not start ({proc.exitcode})"
                    )
            self.ports += ready.recv()
        self.port = self.ports[0]
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            proc.join(10)
        self._procs = []
