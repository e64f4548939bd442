"""What the scaled mode's real-process tests share (test_scaled_roles.py, test_scaled_mode.py,
test_scaled_grouper.py, test_scaled_chaos.py): a farm of feeds on local servers whose content
changes on demand and which counts what it serves, the roles as `newswatch run --role …`
processes, a webhook receiver counting idempotency keys, and the grouping of a store in a
form two stores can be compared by.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import Engine, text

from tests.localserver import LocalServer
from tests.reliability.processes import Newswatch

postgres_only = pytest.mark.parametrize("store_url", ["postgres"], indirect=True)

HOSTS = 4  # servers on ports of their own: four hosts to the fetchers' politeness
ITEMS = 3
SETTLE_SECONDS = 180
# A batch whose worker was killed runs again once the worker's heartbeat is missed (30 s).
RETRY_SECONDS = 240
PROBLEMS = ("UniqueViolation", "IntegrityError", "deadlock", "Traceback")


def render(n: int, gen: int) -> bytes:
    """ITEMS entries of its own per feed and generation, and one entry that every feed
    carries in that generation (stored once, a sighting at each: the fetch workers store it
    at the same moment)."""
    items = [
        (f"https://news.example/{n}/{gen}/{i}", f"Report {i} of feed {n}, version {gen}")
        for i in range(ITEMS)
    ] + [(f"https://wire.example/{gen}", f"The wire story of round {gen}")]
    return rss(
        n,
        [
            (link, title, f"{title}: what happened, told at length for the reader.")
            for link, title in items
        ],
    )


def rss(n: int, items: list[tuple[str, str, str]]) -> bytes:
    """A feed of (link, title, description) items."""
    body = "".join(
        f"<item><title>{title}</title><link>{link}</link><guid>{link}</guid>"
        f"<description>{description}</description></item>"
        for link, title, description in items
    )
    return (f"<rss version='2.0'><channel><title>feed {n}</title>{body}</channel></rss>").encode()


@dataclass
class Farm:
    """Feeds on several local servers; `generation[n]` is feed n's content version, `page`
    renders feed n at a generation. `downloads` is the farm's own log of full answers: how
    often each (feed, generation) was served."""

    servers: list[LocalServer]
    feeds: int
    page: Callable[[int, int], bytes] = field(default_factory=lambda: render)
    generation: dict[int, int] = field(default_factory=dict)
    downloads: Counter[tuple[int, int]] = field(default_factory=Counter)
    not_modified: Counter[int] = field(default_factory=Counter)
    hold: set[int] = field(default_factory=set)  # feeds whose answer waits for `release`
    held: set[int] = field(default_factory=set)  # feeds with a request waiting now
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: Counter[int] = field(default_factory=Counter)  # requests under way, by port
    most_in_flight: Counter[int] = field(default_factory=Counter)

    def url(self, n: int) -> str:
        return self.servers[n % len(self.servers)].url(f"/feed/{n}")

    async def handle(self, request: web.Request) -> web.Response:
        port = request.url.port or 0
        with self.lock:
            self.in_flight[port] += 1
            self.most_in_flight[port] = max(self.most_in_flight[port], self.in_flight[port])
        try:
            # A moment's work, so that requests from two workers would overlap here.
            await asyncio.sleep(0.01)
            return await self._answer(request)
        finally:
            with self.lock:
                self.in_flight[port] -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        n = int(request.path.rsplit("/", 1)[1])
        if n in self.hold and not self.release.is_set():
            self.held.add(n)
            while not self.release.is_set():
                await asyncio.sleep(0.05)
        with self.lock:
            gen = self.generation.get(n, 0)
            etag = f'"{n}-{gen}"'
            if request.headers.get("If-None-Match") == etag:
                self.not_modified[n] += 1
                return web.Response(status=304, headers={"ETag": etag})
            self.downloads[(n, gen)] += 1
        return web.Response(
            body=self.page(n, gen), content_type="application/rss+xml", headers={"ETag": etag}
        )

    def bump(self, feeds: list[int]) -> None:
        with self.lock:
            for n in feeds:
                self.generation[n] = self.generation.get(n, 0) + 1

    def downloaded_current(self) -> bool:
        with self.lock:
            return all(self.downloads[(n, self.generation.get(n, 0))] for n in range(self.feeds))


@contextmanager
def farm(
    feeds: int, hosts: int = HOSTS, page: Callable[[int, int], bytes] = render
) -> Iterator[Farm]:
    with ExitStack() as stack:
        servers = [stack.enter_context(LocalServer()) for _ in range(hosts)]
        result = Farm(servers, feeds, page)
        for server in servers:
            server.routes.update({f"/feed/{n}": result.handle for n in range(feeds)})
        yield result


def write_config(tmp_path: Path, the_farm: Farm, channels: str = "", interval: str = "10s") -> Path:
    config = tmp_path / "newswatch.yaml"
    sources = "".join(
        f"  - name: feed{n}\n    url: {the_farm.url(n)}\n    interval: {interval}\n    kind: feed\n"
        for n in range(the_farm.feeds)
    )
    config.write_text(f"sources:\n{sources}{channels}")
    return config


def role(env: dict[str, str], tmp_path: Path, name: str, *roles: str) -> Newswatch:
    args = ["run", *(arg for r in roles for arg in ("--role", r))]
    return Newswatch(args, env, tmp_path / f"{name}.log")


def running(*processes: Newswatch) -> bool:
    """True while every process runs; a process that ended fails the test with its log."""
    for nw in processes:
        assert nw.proc is not None and nw.proc.poll() is None, nw.log_text()[-3000:]
    return True


def scalar(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def problems(*processes: Newswatch) -> list[str]:
    return [
        line
        for nw in processes
        for line in nw.log_text().splitlines()
        if any(problem in line for problem in PROBLEMS)
    ]


def expected_articles(the_farm: Farm) -> int:
    """Distinct articles the farm served: every version's own entries, and one wire story
    for each round (generation) any feed served."""
    versions = sum(the_farm.generation.get(n, 0) + 1 for n in range(the_farm.feeds))
    rounds = max(the_farm.generation.values(), default=0) + 1
    return versions * ITEMS + rounds


@dataclass
class Receiver:
    """A webhook endpoint counting each idempotency key it was sent."""

    keys: Counter[str] = field(default_factory=Counter)

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        payloads = body.get("notifications") or [body]
        for payload in payloads:
            self.keys[payload["idempotency_key"]] += 1
        return web.Response(status=204)


def wire_rule_to_webhook(server: LocalServer) -> tuple[Receiver, str]:
    """A receiver served at /hook and the config lines of a webhook channel to it with the
    rule `wire` ("wire story") sending there."""
    receiver = Receiver()
    server.routes["/hook"] = receiver.handle
    channels = (
        f"channels:\n  - name: ops\n    type: webhook\n    url: {server.url('/hook')}\n"
        "    timeout: 10\n"
        "rules:\n  - name: wire\n    query: '\"wire story\"'\n    channels: [ops]\n"
    )
    return receiver, channels


def grouping_of(engine: Engine) -> tuple[dict[int, tuple[Any, ...]], dict[int, tuple[Any, ...]]]:
    """Every article's place (event, stage, copy of) and every event's identity (merged into,
    split from) with, for open events, its article count (a merged event's row keeps the
    count of its last write before the merge, which depends on where batches end, in
    either mode)."""
    with engine.connect() as conn:
        articles = {
            r[0]: tuple(r[1:])
            for r in conn.execute(
                text("SELECT id, event_id, group_stage, duplicate_of FROM articles")
            )
        }
        events = {
            r[0]: tuple(r[1:])
            for r in conn.execute(
                text(
                    "SELECT id, merged_into, split_from, "
                    "CASE WHEN merged_into IS NULL THEN article_count END FROM events"
                )
            )
        }
    return articles, events
