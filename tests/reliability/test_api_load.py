"""API load must not starve ingestion or health checks (issue 20, item 1).

A real `newswatch run` (SQLite and Postgres, API token set) polls a farm of feeds on 127.0.0.1 whose
entries change every second, while 50 concurrent clients read the API and the pages. During
the load: no 5xx but 503 (with Retry-After), every /healthz probe answered, articles keep
being stored; SIGTERM sent under load ends the service and its API process, exit status 0.
Behaviour only: how fast (/healthz p99, the ingestion rate against no load, the time to
exit) is measured by bench/bench_api_load.py, not asserted here.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from newswatch.store.db import make_engine
from tests.localserver import LocalServer

FEEDS = 60
CLIENTS = 50
LOAD_SECONDS = 12.0  # longer than a source's interval (10 s): every source polls again
PROBE_TIMEOUT = 30.0  # a probe unanswered this long is unanswered (not a latency bound)
EXIT_TIMEOUT = 120.0  # a process still there after this long ignored SIGTERM
MIN_PROBES = 3  # health probes the load lasts for at least (a loaded machine is slow) ...
MAX_LOAD_SECONDS = 120.0  # ... unless they never come back
TOKEN = "load-test-token"
PATHS = ["/api/events", "/api/articles?limit=100", "/api/sources", "/sources", "/", "/metrics"]


def farm_feed(feed: int) -> web.Response:
    """Five entries, new ones every second: every poll finds something to store."""
    tick = int(time.time())
    items = "".join(
        f"<item><title>Report {feed}-{tick - n} on the harbour strike</title>"
        f"<link>http://farm.test/{feed}/{tick - n}</link>"
        f"<guid>farm-{feed}-{tick - n}</guid>"
        f"<description>Dockers at port {feed} walked out, day {tick - n}.</description></item>"
        for n in range(5)
    )
    body = f"<rss version='2.0'><channel><title>Farm {feed}</title>{items}</channel></rss>"
    return web.Response(body=body, content_type="application/rss+xml")


@pytest.fixture
def farm() -> Iterator[LocalServer]:
    with LocalServer() as server:
        for feed in range(FEEDS):

            async def handler(request: web.Request, feed: int = feed) -> web.Response:
                return farm_feed(feed)

            server.routes[f"/feed/{feed}"] = handler
        yield server


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    base: str
    store: Engine  # the test's own connection to the service's store
    log: Path


def wait_for_port(log: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if '"http server listening"' in line:
                return int(json.loads(line)["port"])
        if proc.poll() is not None:
            raise AssertionError(f"newswatch run exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    raise AssertionError("newswatch run did not start its HTTP server")


@pytest.fixture
def service(farm: LocalServer, store_url: str, tmp_path: Path) -> Iterator[Running]:
    config = tmp_path / "newswatch.yaml"
    config.write_text(
        "sources:\n"
        + "".join(
            f"  - name: farm-{n}\n    url: {farm.url(f'/feed/{n}')}\n    interval: 10s\n"
            for n in range(FEEDS)
        )
    )
    env = dict(os.environ) | {
        "DATABASE_URL": store_url,
        "NEWSWATCH_CONFIG": str(config),
        "NEWSWATCH_API_TOKEN": TOKEN,
        "NEWSWATCH_HTTP_HOST": "127.0.0.1",
        "NEWSWATCH_HTTP_PORT": "0",
        "NEWSWATCH_HTTP_MIN_HOST_DELAY": "0",
        "NEWSWATCH_HTTP_PER_HOST_CONCURRENCY": "20",  # the farm stands for many hosts
        "NEWSWATCH_FIRST_RUN_SPREAD": "2",
        "NEWSWATCH_PARSE_WORKERS": "0",
        "NEWSWATCH_LOG_FORMAT": "json",
    }
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "newswatch", "run"], env=env, stdout=out, stderr=out
        )
    store = make_engine(store_url)
    try:
        port = wait_for_port(log, proc)
        yield Running(proc, f"http://127.0.0.1:{port}", store, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        store.dispose()


def articles_stored(store: Engine) -> int:
    with store.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM articles")).scalar_one())


def wait_for_articles(store: Engine, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        try:
            count = articles_stored(store)
        except DBAPIError:  # tables not created yet
            count = 0
        if count >= at_least:
            return count
        time.sleep(0.2)
    raise AssertionError(f"the first polls stored {count} articles, not {at_least}")


@dataclass
class Load:
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # timeouts, broken connections
    without_retry_after: int = 0
    health: list[float | None] = field(default_factory=list)  # seconds, None: no answer
    # Set when SIGTERM is sent: the server closing connections after it is no failure.
    stopping: bool = False


async def client(base: str, stop: asyncio.Event, load: Load, offset: int) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        n = offset
        while not stop.is_set():
            path = PATHS[n % len(PATHS)]
            n += 1
            try:
                response = await http.get(path)
            except httpx.HTTPError as exc:
                if not load.stopping:
                    load.errors.append(f"{path}: {type(exc).__name__}")
                continue
            load.statuses[response.status_code] = load.statuses.get(response.status_code, 0) + 1
            if response.status_code == 503 and "retry-after" not in response.headers:
                load.without_retry_after += 1


def health_probe(base: str, load: Load) -> None:
    """/healthz every 0.5 s until the load stops, in a thread with a client of its own (the
    load's event loop, busy with 50 clients, would delay the probes' answers itself)."""
    with httpx.Client(base_url=base, timeout=PROBE_TIMEOUT) as http:
        while not load.stopping:
            started = time.monotonic()
            try:
                ok = http.get("/healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok or not load.stopping:  # the server closing after SIGTERM is no failure
                load.health.append(time.monotonic() - started if ok else None)
            time.sleep(0.5)


async def run_load(running: Running, seconds: float) -> tuple[Load, int | None]:
    """Load for `seconds` and until MIN_PROBES health probes came back, then SIGTERM while
    the clients still run; the exit status."""
    load = Load()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(client(running.base, stop, load, i)) for i in range(CLIENTS)]
    prober = threading.Thread(target=health_probe, args=(running.base, load), daemon=True)
    prober.start()
    started = time.monotonic()
    while time.monotonic() - started < seconds or (
        len(load.health) < MIN_PROBES and time.monotonic() - started < MAX_LOAD_SECONDS
    ):
        await asyncio.sleep(0.2)
    load.stopping = True
    running.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    while running.proc.poll() is None and time.monotonic() - signalled < EXIT_TIMEOUT:
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(prober.join, PROBE_TIMEOUT)
    return load, running.proc.poll()


def test_api_load_does_not_starve_ingestion_or_health(service: Running) -> None:
    # The first round of polls is done: what is stored during the load, the next rounds stored.
    before = wait_for_articles(service.store, at_least=FEEDS * 5)
    load, exit_status = asyncio.run(run_load(service, LOAD_SECONDS))
    after = articles_stored(service.store)
    log_tail = service.log.read_text(errors="replace")[-3000:]

    server_errors = {s: n for s, n in load.statuses.items() if s >= 500 and s != 503}
    assert not server_errors, f"5xx other than 503: {server_errors}\n{log_tail}"
    assert load.statuses.get(200, 0) > 0, load.statuses
    assert load.without_retry_after == 0
    assert not load.errors, f"{len(load.errors)} requests failed: {load.errors[:5]}"
    answered = [t for t in load.health if t is not None]
    assert load.health and len(answered) == len(load.health), f"/healthz unanswered: {load.health}"
    assert after > before, f"no article stored during the load ({before} before)\n{log_tail}"
    assert exit_status == 0, f"SIGTERM under load: exit status {exit_status}\n{log_tail}"
    assert service.log.read_text().count('"http server stopped"') == 1, log_tail
