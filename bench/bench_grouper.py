"""The scaled grouper (`newswatch run --role group`, Postgres): grouping lag at a steady
arrival rate, and failover time after `kill -9` of the leader at a large window.

    python bench/bench_grouper.py [--window 150000] [--rate 50] [--rounds 5] [--words 120]

1. Fill: `--window` synthetic articles (bench/synthetic_news.py, `--words` words each) go
   through the single-process pipeline into a fresh Postgres schema, published over 72 hours
   (the grouping window), so a grouper restoring the store holds all of them.
2. Two real grouper processes start; each restores that window.
3. Each round: a feeder stores articles as fetch workers do (no grouping, NOTIFY) at `--rate`
   per second for `--seconds`; then the leader gets SIGKILL and the time until the standby's
   first grouped batch is taken (articles keep coming); a fresh standby is started, and the
   round waits until it has built its state. Its build time is the baseline: what a standby
   that restores the window at takeover (not replaying the leader's log as it goes) would add
   to the failover.

Printed: lag (article stored -> its batch committed) p50/p99 per round, failover seconds,
state build seconds; min/median/max over rounds. Needs NEWSWATCH_BENCH_DATABASE_URL or
NEWSWATCH_TEST_DATABASE_URL (a Postgres database; a schema `h16b_bench_<pid>` is made and
dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from newswatch.config import FileConfig, Settings
from newswatch.pipeline import Pipeline
from newswatch.shared_types import ParsedEntry
from newswatch.store.articles import ensure_sources, store_batch
from newswatch.store.db import make_engine, normalise_url, session_scope, upgrade
from newswatch.store.grouper_lease import ARTICLES_CHANNEL, notify
from synthetic_news import stream

FILL_CHUNK = 500
FEED_TICK = 0.1  # seconds between the feeder's batches


def _entries(records: list[dict[str, Any]]) -> list[tuple[str, ParsedEntry]]:
    return [
        (
            str(r["source"]),
            ParsedEntry(
                url=str(r["url"]),
                guid=str(r["id"]),
                title=str(r["title"]),
                text=str(r["text"]),
                published=datetime.fromisoformat(str(r["published"]).replace("Z", "+00:00")),
            ),
        )
        for r in records
    ]


def fill(engine: Engine, entries: list[tuple[str, ParsedEntry]]) -> float:
    pipeline = Pipeline(engine, FileConfig(), Settings(), alerts=False)
    started = time.perf_counter()
    for start in range(0, len(entries), FILL_CHUNK):
        chunk = entries[start : start + FILL_CHUNK]
        with session_scope(engine) as session:
            sources = ensure_sources(session, [n for n, _e in chunk], origin="config")
            pipeline.ingest_jobs(session, [(sources[n], [e]) for n, e in chunk])
    return time.perf_counter() - started


def store_as_fetch_worker(engine: Engine, chunk: list[tuple[str, ParsedEntry]]) -> None:
    with session_scope(engine) as session:
        sources = ensure_sources(session, [n for n, _e in chunk], origin="config")
        store_batch(session, [(sources[n], e) for n, e in chunk])
        notify(session, ARTICLES_CHANNEL)


class Feeder(threading.Thread):
    """Stores `rate` articles a second, a batch every FEED_TICK, until stopped."""

    def __init__(self, engine: Engine, entries: list[tuple[str, ParsedEntry]], rate: float):
        super().__init__(daemon=True)
        self.engine, self.entries, self.rate = engine, entries, rate
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set() and self.sent < len(self.entries):
            due = int((time.monotonic() - started) * self.rate)
            if due > self.sent:
                store_as_fetch_worker(self.engine, self.entries[self.sent : due])
                self.sent = due
            self.stop.wait(FEED_TICK)


class GrouperProcess:
    def __init__(self, url: str, log_path: Path):
        env = dict(os.environ) | {"DATABASE_URL": url, "NEWSWATCH_LOG_FORMAT": "json"}
        env.pop("NEWSWATCH_CONFIG", None)
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "newswatch", "run", "--role", "group"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def logged(self, event: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"{event}"' in line:
                out.append(json.loads(line))
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)


def _scalar(engine: Engine, query: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(query), params).scalar()


def wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def lags_since(engine: Engine, first_id: int) -> list[float]:
    """Seconds from each article's insert (first_seen) to its batch's commit."""
    query = text(
        "SELECT extract(epoch FROM b.created_at - a.first_seen) FROM grouper_batches b "
        "CROSS JOIN LATERAL json_array_elements_text(b.article_ids) AS x(id) "
        "JOIN articles a ON a.id = x.id::bigint WHERE a.id >= :first"
    )
    with engine.connect() as conn:
        return sorted(float(v) for v in conn.execute(query, {"first": first_id}).scalars())


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name}: min {min(values):.3f} / median {statistics.median(values):.3f} / "
        f"max {max(values):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=150_000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--words", type=int, default=120)
    args = parser.parse_args()
    base = os.environ.get("NEWSWATCH_BENCH_DATABASE_URL") or os.environ.get(
        "NEWSWATCH_TEST_DATABASE_URL"
    )
    if not base:
        raise SystemExit("set NEWSWATCH_BENCH_DATABASE_URL to a Postgres database")
    schema = f"h16b_bench_{os.getpid()}"
    admin = create_engine(normalise_url(base))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = f"{normalise_url(base)}?options=-csearch_path%3D{schema}"
    logs = Path(f"/tmp/{schema}")
    logs.mkdir(exist_ok=True)
    groupers: list[GrouperProcess] = []
    feeder: Feeder | None = None
    try:
        engine = make_engine(url)
        upgrade(engine)
        per_round = int(args.rate * args.seconds * 1.5)
        records = list(
            stream(
                args.window + per_round * args.rounds, per_hour=args.window // 72, words=args.words
            )
        )
        entries = _entries(records)
        filled = fill(engine, entries[: args.window])
        print(f"filled {args.window} articles through the pipeline in {filled:.0f} s", flush=True)
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        groupers = [GrouperProcess(url, logs / f"g{n}.log") for n in range(2)]
        wait(lambda: all(g.logged("grouper.state_built") for g in groupers), 3600, "states")
        builds = [g.logged("grouper.state_built")[0]["seconds"] for g in groupers]
        print(f"first two groupers built their state in {builds} s", flush=True)
        lags: list[float] = []
        p50s, p99s, failovers, standby_builds = [], [], [], []
        next_entry = args.window
        for round_no in range(args.rounds):
            first_id = int(_scalar(engine, "SELECT coalesce(max(id), 0) + 1 FROM articles"))
            feeder = Feeder(engine, entries[next_entry : next_entry + per_round], args.rate)
            feeder.start()
            time.sleep(args.seconds)  # the steady state the lag is measured over
            epoch = int(_scalar(engine, "SELECT epoch FROM grouper_lease"))
            holder = str(_scalar(engine, "SELECT holder FROM grouper_lease"))
            leader = next(g for g in groupers if str(g.proc.pid) == holder.rsplit(":", 1)[1])
            killed_at = time.time()
            leader.kill()
            wait(
                lambda e=epoch: _scalar(
                    engine, "SELECT count(*) FROM grouper_batches WHERE epoch > :e", e=e
                ),
                600,
                "the standby's first batch",
            )
            first = _scalar(
                engine,
                "SELECT extract(epoch FROM min(created_at)) FROM grouper_batches WHERE epoch > :e",
                e=epoch,
            )
            failovers.append(float(first) - killed_at)
            feeder.stop.set()
            feeder.join()
            next_entry += feeder.sent
            groupers.remove(leader)
            fresh = GrouperProcess(url, logs / f"g{round_no + 2}.log")
            groupers.append(fresh)
            wait(lambda f=fresh: f.logged("grouper.state_built"), 3600, "a fresh standby")
            standby_builds.append(float(fresh.logged("grouper.state_built")[0]["seconds"]))
            wait(
                lambda: (
                    _scalar(engine, "SELECT count(*) FROM articles WHERE event_id IS NULL") == 0
                ),
                600,
                "the drain",
            )
            round_lags = lags_since(engine, first_id)
            lags += round_lags
            p50s.append(pct(round_lags, 0.5))
            p99s.append(pct(round_lags, 0.99))
            print(
                f"round {round_no + 1}: {len(round_lags)} articles, lag p50 {p50s[-1]:.3f} s "
                f"p99 {p99s[-1]:.3f} s; failover {failovers[-1]:.3f} s; a fresh standby "
                f"built its state in {standby_builds[-1]:.1f} s",
                flush=True,
            )
        window_now = _scalar(engine, "SELECT count(*) FROM articles")
        print(f"window: {window_now} articles, {args.words} words each; rate {args.rate}/s")
        print(summary("lag p50 s (per round)", p50s))
        print(summary("lag p99 s (per round, includes the failover)", p99s))
        print(summary("failover s (kill -9 -> standby's first batch)", failovers))
        print(summary("standby state build s (restore + log replay; baseline)", standby_builds))
        print(f"load average: {os.getloadavg()}")
        engine.dispose()
    finally:
        if feeder is not None:
            feeder.stop.set()
        for g in groupers:
            g.kill()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    main()
