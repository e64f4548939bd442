"""Alert latency: from an article handed to the pipeline to its webhook received on loopback.

    python bench/bench_alert_latency.py [--count 300] [--database-url URL]

One asyncio loop plays the service: the delivery worker runs as its companion (woken by the
pipeline after each commit, polling every second otherwise) while articles arrive one at a
time, each opening a new event that a rule (`min_sources: 1`, `group_wait: 0`) matches. The
time from `Pipeline.ingest` being called (store, group, match, outbox row, commit) to the
signed POST arriving at a receiver in another thread is measured, with ingest
- inline: in the loop, as the poller does for small writes;
- thread: in a worker thread, as the poller does for big batches (the wake crosses threads).
Baseline in the same run: the same signed POST sent directly by the webhook channel (httpx;
no store, no worker).
Target: p99 < 1 s. Prints p50/p99 and the ratios to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from newswatch.alerts.channels.webhook import WebhookChannel
from newswatch.alerts.config import ChannelConfig, RuleConfig
from newswatch.alerts.delivery import DeliveryWorker
from newswatch.config import FileConfig, Settings
from newswatch.log import configure_logging
from newswatch.pipeline import Pipeline
from newswatch.shared_types import ParsedEntry
from newswatch.store.articles import ensure_source
from newswatch.store.db import make_engine, session_scope, upgrade


class Receiver:
    """Records when each Idempotency-Key arrived (perf_counter, shared by all threads) and
    how many times (bench/chaos.py: a repeat after a kill is allowed, a missing key not)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.received: Counter[str] = Counter()
        self.taken = 0  # arrivals already handed out by next_arrival
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.cond:
                    receiver.arrived[self.headers["Idempotency-Key"]] = time.perf_counter()
                    receiver.received[self.headers["Idempotency-Key"]] += 1
                    receiver.cond.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def next_arrival(self, timeout: float = 30.0) -> tuple[str, float]:
        """The first key not handed out yet, and when it arrived."""
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.arrived) > self.taken, timeout):
                raise TimeoutError("no notification arrived")
            key = list(self.arrived)[self.taken]
            self.taken += 1
            return key, self.arrived[key]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def entry(rng: random.Random, n: int) -> ParsedEntry:
    """A report sharing no word with any other but "quake", so each opens an event."""

    def made_up(count: int) -> str:
        letters = "bcdfghjklmnprstvz"
        return " ".join(
            "".join(rng.choice(letters) + rng.choice("aeiou") for _ in range(3))
            for _ in range(count)
        )

    return ParsedEntry(
        url=f"https://wire.example.org/{n}",
        title=f"Quake near {made_up(5)}",
        text=f"Quake felt in {made_up(60)}.",
        published=datetime.now(UTC),
    )


def percentiles(values: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values), cuts[98]


async def through_pipeline(
    pipeline: Pipeline, source_id: int, receiver: Receiver, count: int, threaded: bool
) -> list[float]:
    rng = random.Random(7 if threaded else 3)
    out = []
    for n in range(count):
        await asyncio.sleep(rng.uniform(0.01, 0.05))  # the worker is idle, waiting
        item = entry(rng, n + (10**6 if threaded else 0))
        start = time.perf_counter()
        if threaded:
            result = await asyncio.to_thread(pipeline.ingest, source_id, [item])
        else:
            result = pipeline.ingest(source_id, [item])
        assert result.new == 1, result  # a new article ...
        key, arrived = await asyncio.to_thread(receiver.next_arrival)
        assert key.startswith("quake:"), key  # ... whose event the rule notified
        out.append(arrived - start)
    return out


async def baseline(receiver: Receiver, count: int) -> list[float]:
    """The same signed POST, straight from a webhook channel: the floor of any latency."""
    channel = WebhookChannel(
        ChannelConfig(name="ops", type="webhook", url=receiver.url, secret="s")
    )
    rng = random.Random(11)
    out = []
    for n in range(count):
        await asyncio.sleep(rng.uniform(0.01, 0.05))
        payload = {"rule": "quake", "event_id": n, "idempotency_key": f"base:{n}", "articles": []}
        start = time.perf_counter()
        result = await channel.send([payload])
        assert result.ok, result
        out.append(receiver.arrived[f"base:{n}"] - start)
    await channel.aclose()
    return out


async def run(url: str, count: int) -> dict[str, object]:
    engine = make_engine(url)
    upgrade(engine)
    receiver = Receiver()
    channel = ChannelConfig(name="ops", type="webhook", url=receiver.url, secret="s", timeout=5)
    rule = RuleConfig(name="quake", query="quake", min_sources=1, channels=["ops"])
    config = FileConfig(channels=[channel], rules=[rule])
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    pipeline = Pipeline(engine, config, settings)
    worker = DeliveryWorker.from_config(engine, config, settings)
    pipeline.on_enqueued.append(worker.wake)
    with session_scope(engine) as session:
        source_id = ensure_source(session, "wire").id
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        base = await baseline(receiver, count)
        receiver.taken = len(receiver.arrived)
        inline = await through_pipeline(pipeline, source_id, receiver, count, threaded=False)
        threaded = await through_pipeline(pipeline, source_id, receiver, count, threaded=True)
    finally:
        stop.set()
        await task
        receiver.close()
        engine.dispose()
    report: dict[str, object] = {"count": count, "store": engine.dialect.name}
    b50, b99 = percentiles(base)
    report["baseline_ms"] = {"p50": round(b50 * 1000, 2), "p99": round(b99 * 1000, 2)}
    for name, values in (("inline", inline), ("thread", threaded)):
        p50, p99 = percentiles(values)
        report[f"{name}_ms"] = {
            "p50": round(p50 * 1000, 2),
            "p99": round(p99 * 1000, 2),
            "max": round(max(values) * 1000, 2),
            "p50_vs_baseline": round(p50 / b50, 1),
            "p99_under_1s": p99 < 1.0,
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args()
    configure_logging("WARNING", "json")
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'bench.db'}"
        report = asyncio.run(run(url, args.count))
    print(json.dumps(report, indent=2))
    sys.exit(0 if all(report[f"{m}_ms"]["p99_under_1s"] for m in ("inline", "thread")) else 1)  # type: ignore[index]


if __name__ == "__main__":
    main()
