"""Ingestion and health checks under API load: a real `newswatch run` on SQLite (API token
set) polls 300 feeds on 127.0.0.1 while 50 concurrent clients read the API and the pages.

    python bench/bench_api_load.py [--feeds 300] [--clients 50] [--window 60] [--rounds 5]

`newswatch run` serves the port from a probe front and an API process of its own
(decisions 0083, 0089): /healthz is the front's answer from the service's heartbeats.

Windows without and with API load alternate (`--rounds` of each, interleaved); the baseline
is the windows without load of the same run. Per mode it prints min/median/max of the
ingestion rate (articles stored/s), of /healthz's median and 99th percentile latency (probed
every 100 ms) and of the API's answers (200/s, 503s, other 5xx, failures). At the end SIGTERM
is sent under load and the time to exit printed. Targets (issue 20): /healthz p99 < 100 ms,
ingestion >= 80 % of the rate without load, no 5xx but 503, exit within 10 s.

The floor: the same prober asks a bare aiohttp server (its own process, nothing else to do)
for the same tiny answer right after each /healthz probe. On a machine shared with other
work its latency is what scheduling alone costs; newswatch's p99 is printed beside it.

With `--pin` (the default on a machine with two cores or more) the service, the floor server
and the prober run on the first cores and the load clients and the feed farm on the last one
(sched_setaffinity): on a small machine the 50 clients' own CPU would otherwise be counted as
the service's latency. `--service-env KEY=VALUE` passes settings to the service (to compare
variants in separate runs).

The feeds change every `--interval` seconds (20 new entries each), the sources are polled at
that interval: every poll stores something.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feedfarm import FeedFarm

TOKEN = "bench-token"
PATHS = ["/api/events", "/api/articles?limit=100", "/api/sources", "/sources", "/", "/metrics"]


@dataclass
class Window:
    mode: str
    articles_per_s: float = 0.0
    health: list[float] = field(default_factory=list)  # seconds
    health_missed: int = 0
    floor: list[float] = field(default_factory=list)  # the bare server's, seconds
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0  # timeouts, broken connections
    load_average: float = 0.0  # the machine's 1-minute load average at the window's end

    def p(self, q: float) -> float:
        """The q-quantile of /healthz latency in ms; a missed probe counts as 5 s."""
        return quantile_ms(self.health + [5.0] * self.health_missed, q)

    def floor_p(self, q: float) -> float:
        return quantile_ms(self.floor, q)


def quantile_ms(seconds: list[float], q: float) -> float:
    values = sorted(seconds)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else 0.0


@dataclass(frozen=True)
class Cores:
    """Where each side runs: None leaves the scheduler free to place everything."""

    service: set[int] | None = None
    clients: set[int] | None = None

    @classmethod
    def split(cls, pin: bool) -> Cores:
        cpus = sorted(os.sched_getaffinity(0))
        if not pin or len(cpus) < 2:
            return cls()
        return cls(service=set(cpus[:-1]), clients={cpus[-1]})

    def taskset(self) -> list[str]:
        """The prefix that starts a command on the service's cores."""
        if self.service is None:
            return []
        return ["taskset", "-c", ",".join(map(str, sorted(self.service)))]


def pin_to(cores: set[int] | None) -> None:
    if cores is not None:
        os.sched_setaffinity(0, cores)


def floor_server(ports: Connection, cores: set[int] | None = None) -> None:
    """A bare aiohttp server answering /healthz: the floor of the probe's latency. It binds
    port 0 and sends the port back (a port chosen before binding may be taken meanwhile on a
    shared machine)."""
    from aiohttp import web

    pin_to(cores)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports.send(runner.addresses[0][1])
        await asyncio.Event().wait()  # until the process is terminated

    asyncio.run(serve())


def articles(db: Path) -> int:
    with sqlite3.connect(db, timeout=60) as conn:
        return int(conn.execute("SELECT count(*) FROM articles").fetchone()[0])


def start_service(
    farm: FeedFarm, tmp: Path, interval: int, cores: Cores, extra_env: dict[str, str]
) -> tuple[subprocess.Popen, str]:
    config = tmp / "newswatch.yaml"
    config.write_text(
        "sources:\n"
        + "".join(
            f"  - name: farm-{n}\n    url: {farm.url(n)}\n    interval: {interval}s\n"
            for n in range(farm.feeds)
        )
    )
    env = (
        dict(os.environ)
        | {
            "DATABASE_URL": f"sqlite:///{tmp / 'newswatch.db'}",
            "NEWSWATCH_CONFIG": str(config),
            "NEWSWATCH_API_TOKEN": TOKEN,
            "NEWSWATCH_HTTP_HOST": "127.0.0.1",
            "NEWSWATCH_HTTP_PORT": "0",
            "NEWSWATCH_HTTP_MIN_HOST_DELAY": "0",
            "NEWSWATCH_HTTP_PER_HOST_CONCURRENCY": "50",  # the farm stands for many hosts
            "NEWSWATCH_FIRST_RUN_SPREAD": str(interval),
            "NEWSWATCH_LOG_FORMAT": "json",
        }
        | extra_env
    )
    log = tmp / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*cores.taskset(), sys.executable, "-m", "newswatch", "run"],
            env=env,
            stdout=out,
            stderr=out,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if '"http server listening"' in line:
                return proc, f"http://127.0.0.1:{json.loads(line)['port']}"
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"newswatch run did not start:\n{log.read_text()[-3000:]}")


async def api_client(base: str, stop: asyncio.Event, window: Window, offset: int) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        n = offset
        while not stop.is_set():
            try:
                response = await http.get(PATHS[n % len(PATHS)])
                status = response.status_code
                window.statuses[status] = window.statuses.get(status, 0) + 1
            except httpx.HTTPError:
                if not stop.is_set():
                    window.failures += 1
            n += 1


def health_probe(base: str, floor: str, seconds: float) -> tuple[list[float], int, list[float]]:
    """/healthz every 100 ms for `seconds`: latencies (s), probes unanswered within 5 s, and
    the floor server's latencies, probed right after each. Runs in a process of its own: the
    load clients' event loop would add its own lag."""
    latencies, missed, floor_latencies = [], 0, []
    end = time.monotonic() + seconds
    with httpx.Client(base_url=base, timeout=5) as http, httpx.Client(timeout=5) as bare:
        while time.monotonic() < end:
            started = time.perf_counter()
            try:
                ok = http.get("/healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                missed += 1
            started = time.perf_counter()
            with contextlib.suppress(httpx.HTTPError):
                bare.get(f"{floor}/healthz").raise_for_status()
                floor_latencies.append(time.perf_counter() - started)
            time.sleep(0.1)
    return latencies, missed, floor_latencies


async def measure(
    base: str,
    floor: str,
    db: Path,
    mode: str,
    seconds: float,
    clients: int,
    prober: ProcessPoolExecutor,
) -> Window:
    window = Window(mode)
    stop = asyncio.Event()
    tasks = []
    if mode == "load":
        tasks = [asyncio.create_task(api_client(base, stop, window, i)) for i in range(clients)]
    before, started = await asyncio.to_thread(articles, db), time.monotonic()
    loop = asyncio.get_running_loop()
    window.health, window.health_missed, window.floor = await loop.run_in_executor(
        prober, health_probe, base, floor, seconds
    )
    after, ended = await asyncio.to_thread(articles, db), time.monotonic()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    window.articles_per_s = (after - before) / (ended - started)
    window.load_average = os.getloadavg()[0]
    return window


async def sigterm_under_load(proc: subprocess.Popen, base: str, clients: int) -> float | None:
    window = Window("stop")
    stop = asyncio.Event()
    tasks = [asyncio.create_task(api_client(base, stop, window, i)) for i in range(clients)]
    await asyncio.sleep(5)
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    stop.set()  # failures after the signal are expected
    exited = None
    while time.monotonic() - signalled < 30:
        if proc.poll() is not None:
            exited = time.monotonic() - signalled
            break
        await asyncio.sleep(0.05)
    await asyncio.gather(*tasks, return_exceptions=True)
    return exited


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def report(windows: list[Window], window_s: float, exit_after: float | None) -> None:
    print("per mode: min / median / max over the windows")
    idle_rate = statistics.median(w.articles_per_s for w in windows if w.mode == "idle")
    for mode in ("idle", "load"):
        ws = [w for w in windows if w.mode == mode]
        print(f"\n{mode} ({len(ws)} windows of {window_s:g} s)")
        print(f"  ingestion articles/s      {spread([w.articles_per_s for w in ws])}")
        share = [w.articles_per_s / idle_rate * 100 for w in ws] if idle_rate else [0.0]
        print(f"  ingestion % of idle median {spread(share, '{:.0f}')}")
        print(f"  /healthz median ms        {spread([w.p(0.5) for w in ws], '{:.1f}')}")
        print(f"  /healthz p99 ms           {spread([w.p(0.99) for w in ws], '{:.1f}')}")
        print(f"  floor median ms           {spread([w.floor_p(0.5) for w in ws], '{:.1f}')}")
        print(f"  floor p99 ms              {spread([w.floor_p(0.99) for w in ws], '{:.1f}')}")
        print(f"  /healthz unanswered       {sum(w.health_missed for w in ws)}")
        print(f"  load average (1 min)      {spread([w.load_average for w in ws], '{:.1f}')}")
        if mode == "load":
            ok = [w.statuses.get(200, 0) / window_s for w in ws]
            busy = [float(w.statuses.get(503, 0)) for w in ws]
            other = sum(n for w in ws for s, n in w.statuses.items() if s >= 500 and s != 503)
            print(f"  API 200/s                 {spread(ok, '{:.1f}')}")
            print(f"  API 503 per window        {spread(busy, '{:.0f}')}")
            print(f"  API other 5xx (total)     {other}")
            print(f"  API failures (total)      {sum(w.failures for w in ws)}")
    shown = "not within 30 s" if exit_after is None else f"{exit_after:.1f} s"
    print(f"\nSIGTERM under load -> exit: {shown}")


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp())
    spawn = multiprocessing.get_context("spawn")
    cores = Cores.split(args.pin)
    print(f"cores: service {cores.service or 'any'}, clients and farm {cores.clients or 'any'}")
    extra_env = dict(item.split("=", 1) for item in args.service_env)
    floor_end, child_end = spawn.Pipe()
    floor_proc = spawn.Process(target=floor_server, args=(child_end, cores.service), daemon=True)
    floor_proc.start()
    if not floor_end.poll(60):
        raise SystemExit("the floor server did not start")
    floor = f"http://127.0.0.1:{floor_end.recv()}"
    pin_to(cores.clients)  # this process's load clients, and the farm it starts
    with FeedFarm(args.feeds, tick=args.interval) as farm:
        proc, base = start_service(farm, tmp, args.interval, cores, extra_env)
        db = tmp / "newswatch.db"
        try:
            # Warm-up: every source polled once (the first round stores the most).
            await asyncio.sleep(args.interval * 1.5)
            windows = []
            prober = ProcessPoolExecutor(
                1, mp_context=spawn, initializer=pin_to, initargs=(cores.service,)
            )
            for _ in range(args.rounds):
                for mode in ("idle", "load"):
                    window = await measure(base, floor, db, mode, args.window, args.clients, prober)
                    windows.append(window)
                    print(
                        f"{mode}: {window.articles_per_s:.1f} articles/s, /healthz p99 "
                        f"{window.p(0.99):.1f} ms (floor {window.floor_p(0.99):.1f} ms), "
                        f"statuses {dict(sorted(window.statuses.items()))}, "
                        f"load average {window.load_average:.1f}",
                        flush=True,
                    )
            exit_after = await sigterm_under_load(proc, base, args.clients)
        finally:
            if proc.poll() is None:
                proc.kill()
            floor_proc.terminate()
    report(windows, args.window, exit_after)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--feeds", type=int, default=300)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--interval", type=int, default=60, help="poll interval (s) = feed change")
    ap.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="service on the first cores, clients and farm on the last (default: on)",
    )
    ap.add_argument(
        "--service-env", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
