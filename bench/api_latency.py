"""Latency of the read API and the live page on a filled store, relative to /healthz.

    python bench/api_latency.py [--events 2000] [--per-event 10] [--requests 100] [--url URL]

Fills a fresh store (SQLite in a temp dir by default; --url for Postgres) with synthetic
events, articles and sightings, serves the app on uvicorn on 127.0.0.1, and times sequential
requests per endpoint. Prints the median and 95th percentile in ms and the ratio of the
median to that of /healthz measured in the same run (the baseline: framework + HTTP cost).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import JSON, Column, Engine, Integer, MetaData, Table, Text, insert, inspect

from newswatch.api import create_app
from newswatch.api.server import bound_port, make_server, serve
from newswatch.config import Settings
from newswatch.store.columns import UTCDateTime
from newswatch.store.db import make_engine, upgrade
from newswatch.store.event_views import EVENTS
from newswatch.store.models import Article, Event, Fetch, Sighting, Source

WORDS = [
    "quake",
    "storm",
    "vote",
    "budget",
    "strike",
    "election",
    "fire",
    "flood",
    "summit",
    "court",
    "rate",
    "bank",
]


def ensure_events_table(engine: Engine) -> None:
    """A stand-in `events` table (the columns the API reads) while the grouping stage's
    migration has not landed; its real table is used when present."""
    if inspect(engine).has_table("events"):
        return
    metadata = MetaData()
    Table(
        "events",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("title", Text),
        Column("first_seen", UTCDateTime, nullable=False),
        Column("last_seen", UTCDateTime, nullable=False),
        Column("article_count", Integer, nullable=False),
        Column("source_count", Integer, nullable=False),
        Column("top_entities", JSON),
        Column("merged_into", Integer),
    )
    metadata.create_all(engine)


def fill(engine: Engine, n_events: int, per_event: int, n_sources: int = 200) -> None:
    ensure_events_table(engine)
    rng = random.Random(7)
    now = datetime.now(UTC)
    sources = [
        {
            "id": i,
            "name": f"source-{i}",
            "url": f"https://s{i}.example/feed",
            "configured_url": f"https://s{i}.example/feed",
            "kind": "feed",
            "origin": "config",
            "enabled": True,
            "options": {},
            "consecutive_errors": int(i % 17 == 0),
            "created_at": now,
        }
        for i in range(1, n_sources + 1)
    ]
    events, articles, sightings, fetches = [], [], [], []
    article_id = 0
    for e in range(1, n_events + 1):
        start = now - timedelta(hours=rng.uniform(0, 72))
        chosen = rng.sample(range(1, n_sources + 1), k=min(per_event, n_sources))
        title = " ".join(rng.sample(WORDS, 4))
        times = sorted(start + timedelta(minutes=rng.uniform(0, 600)) for _ in chosen)
        events.append(
            {
                "id": e,
                "title": title,
                "first_seen": times[0],
                "last_seen": times[-1],
                "article_count": len(chosen),
                "source_count": len(chosen),
                "top_entities": [],
                "revision": 1,
                "created_at": times[0],
                "updated_at": times[-1],
            }
        )
        for source_id, at in zip(chosen, times, strict=True):
            article_id += 1
            url = f"https://s{source_id}.example/{article_id}"
            articles.append(
                {
                    "id": article_id,
                    "url": url,
                    "canonical_url": url,
                    "title": f"{title} report {article_id}",
                    "first_seen": at,
                    "published": at,
                    "source_id": source_id,
                    "event_id": e,
                    "content_hash": hashlib.sha256(url.encode()).hexdigest(),
                }
            )
            sightings.append({"article_id": article_id, "source_id": source_id, "first_seen": at})
    for s in sources:
        for k in range(24):
            fetches.append(
                {
                    "source_id": s["id"],
                    "started_at": now - timedelta(hours=k),
                    "url": s["url"],
                    "status": 304 if k % 3 else 200,
                    "outcome": "not_modified" if k % 3 else "ok",
                    "bytes": 0,
                    "duration_ms": 100,
                    "entries": 0,
                    "new_articles": 0,
                }
            )
    with engine.begin() as conn:
        for table, rows in (
            (Source, sources),
            (Event if inspect(engine).has_table("events") else EVENTS, events),
            (Article, articles),
            (Sighting, sightings),
            (Fetch, fetches),
        ):
            target = getattr(table, "__table__", table)
            for i in range(0, len(rows), 5000):
                conn.execute(insert(target), rows[i : i + 5000])
    if engine.dialect.name == "postgresql":
        # A running store's tables are analyzed by autovacuum; freshly filled ones are not yet,
        # and without statistics Postgres plans seq scans that no user would see.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")


class Served:
    def __init__(self, engine: Engine):
        self.app = create_app(engine, Settings(_env_file=None))  # type: ignore[call-arg]
        self.server = make_server(self.app, "127.0.0.1", 0)
        self.loop = asyncio.new_event_loop()
        self.stop: asyncio.Event | None = None

    async def _main(self) -> None:
        self.stop = asyncio.Event()
        await serve(self.app, "127.0.0.1", 0, self.stop, server=self.server)

    def __enter__(self) -> str:
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self._main(),), daemon=True
        )
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return f"http://127.0.0.1:{bound_port(self.server)}"

    def __exit__(self, *exc: object) -> None:
        assert self.stop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)


def timed(client: httpx.Client, path: str, n: int) -> list[float]:
    client.get(path).raise_for_status()  # warm-up
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.get(path).raise_for_status()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--per-event", type=int, default=10)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--url", help="database URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(args.url or f"sqlite:///{tmp}/bench.db")
        upgrade(engine)
        t0 = time.perf_counter()
        fill(engine, args.events, args.per_event)
        print(
            f"store: {engine.dialect.name}, {args.events} events, "
            f"{args.events * args.per_event} articles, filled in {time.perf_counter() - t0:.1f} s"
        )
        paths = [
            "/healthz",
            "/readyz",
            "/api/events?limit=50",
            "/api/events?since=24h&limit=50",
            "/api/events?q=quake&limit=50",
            "/api/events?min_sources=5&limit=50",
            "/api/events?sort=size&limit=50",
            "/api/events?sort=growth&limit=50",
            f"/api/events/{args.events // 2}",
            "/api/articles?limit=50",
            "/api/articles?q=storm&limit=50",
            "/api/sources",
            "/metrics",
            "/",
            "/sources",
        ]
        with Served(engine) as base, httpx.Client(base_url=base, timeout=60) as client:
            results = {p: timed(client, p, args.requests) for p in paths}
        engine.dispose()
    base_median = statistics.median(results["/healthz"])
    print(f"{'endpoint':40} {'median ms':>10} {'p95 ms':>8} {'x healthz':>10}")
    for path, samples in results.items():
        med = statistics.median(samples)
        p95 = statistics.quantiles(samples, n=20)[-1]
        print(f"{path:40} {med:10.2f} {p95:8.2f} {med / base_median:10.1f}")


if __name__ == "__main__":
    main()
