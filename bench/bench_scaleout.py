"""The scaled mode (issue 16) against its limits, on a real Postgres.

    python bench/bench_scaleout.py [--database-url URL] [--feeds 10000] [--workers 1,2,4]
                                   [--scheduler-sources 50000] [--rounds 5]

(a) Fetch throughput: a farm of `--feeds` feeds on loopback (bench/feedfarm.py, one port a
    feed: a host each), all with stored validators (every answer a 304). One
    `newswatch run --role scheduler` and 1, 2 or 4 `newswatch run --role fetch` processes
    (started before the clock); the clock runs from making every source due (one UPDATE) to
    the last poll's fetch-log row (the scheduler's 1-second tick included). Baseline, in the
    same round: a bare aiohttp client in a process of its own doing the same conditional GETs
    (bench/bench_poll.py's, 100 requests under way), its GET phase. Ratio: rate(newswatch)
    / rate(bare client). Politeness stays on (a 1 s gap per host; each host has one feed
    here, so it never waits).
    CPU per source, from /proc (user + system) over the same clock: the fetch-worker
    processes (summed, and per process), the scheduler, and the Postgres backends serving
    this run's database (its own database, so they can be told from other clients'); the
    bare client's whole process less an empty run of it (its start-up). Unlike the rates,
    these carry to a machine with more cores.
(b) The scheduler's cost per due source: `--scheduler-sources` sources, all due. The
    scheduler's claim passes (store/claims.py, `NEWSWATCH_FETCH_BATCH_SOURCES` x lanes a
    pass, committed each) and its full tick (claims, lanes, one procrastinate job per batch)
    against a plain SELECT of the same rows (id, url of every due source), per source.

Each mode is interleaved with its baseline in every round; min/median/max over `--rounds`.
(a) runs in a database of its own (bench_scaleout_<pid>), (b) in a schema of its own; both
dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import Engine, create_engine, make_url, text

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TICKS = os.sysconf("SC_CLK_TCK")
CPU_GROUPS = ("workers", "busiest worker", "postgres", "scheduler")


def spread(values: list[float]) -> str:
    return f"{min(values):.3g}/{statistics.median(values):.3g}/{max(values):.3g}"


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


# --- (a) fetch throughput -------------------------------------------------------------------
def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "newswatch", "run", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


def wait_logged(log: Path, needle: str, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while log.read_text(errors="replace").count(needle) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {needle!r} in {log}")
        time.sleep(0.1)


def polls_since(engine: Engine, since: datetime) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM fetches WHERE started_at >= :t"),
                {"t": since.replace(tzinfo=None)},
            ).scalar_one()
        )


def make_all_due(engine: Engine) -> datetime:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(text("UPDATE sources SET next_fetch_at = :t"), {"t": now.replace(tzinfo=None)})
    return now


def wait_polled(engine: Engine, since: datetime, feeds: int, timeout: float = 900) -> float:
    deadline = time.monotonic() + timeout
    while polls_since(engine, since) < feeds:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {polls_since(engine, since)} of {feeds} polled")
        time.sleep(0.05)
    return time.perf_counter()


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(120)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process `pid` has used so far; 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def backend_pids(admin: Engine, database: str) -> list[int]:
    with admin.connect() as conn:
        return list(
            conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": database}
            ).scalars()
        )


class CpuMeter:
    """CPU seconds of named process groups between `start()` and `stop()`: the fetch
    workers, the scheduler, and the Postgres backends of the run's database (a backend
    opened during the round counts from its start; one closed during it is lost, which
    makes that figure a floor)."""

    def __init__(self, admin: Engine, database: str):
        self.admin, self.database = admin, database

    def sample(self, groups: dict[str, list[int]]) -> dict[str, dict[int, float]]:
        groups = groups | {"postgres": backend_pids(self.admin, self.database)}
        return {name: {pid: process_cpu(pid) for pid in pids} for name, pids in groups.items()}

    def start(self, groups: dict[str, list[int]]) -> None:
        self.before = self.sample(groups)

    def stop(self, groups: dict[str, list[int]]) -> dict[str, list[float]]:
        after = self.sample(groups)
        return {
            name: [cpu - self.before.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items()]
            for name, pids in after.items()
        }


def throughput(
    admin: Engine, url: str, database: str, feeds: int, worker_counts: list[int], rounds: int
) -> dict:
    import bench_poll
    from bench_poll import bare_client
    from feedfarm import FeedFarm

    engine = create_engine(url)
    meter = CpuMeter(admin, database)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp_dir, FeedFarm(feeds, hosts=feeds) as farm:
        tmp = Path(tmp_dir)
        urls = [farm.url(i) for i in range(feeds)]
        config = tmp / "newswatch.yaml"
        config.write_text(
            "sources:\n"
            + "".join(
                f"  - name: farm-{i}\n    url: {u}\n    interval: 1h\n    kind: feed\n"
                for i, u in enumerate(urls)
            )
            + "grouping:\n  enabled: false\n"
        )
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "NEWSWATCH_CONFIG": str(config),
            "NEWSWATCH_LOG_LEVEL": "INFO",
            "NEWSWATCH_LOG_FORMAT": "json",
        }
        scheduler = start(["--role", "scheduler"], env, tmp / "scheduler.log")
        try:
            wait_logged(tmp / "scheduler.log", "roles started", 1)
            # First pass: every feed new, its validators stored (4 workers).
            workers = [start(["--role", "fetch"], env, tmp / "first.log") for _ in range(4)]
            since = make_all_due(engine)
            wait_polled(engine, since, feeds)
            stop(workers)
            with engine.connect() as conn:
                etags = dict(conn.execute(text("SELECT url, etag FROM sources")).all())
            requests = [(u, etags.get(u)) for u in urls]
            assert all(e for _u, e in requests), "a feed has no stored ETag"
            for r in range(rounds):
                modes: list[int | str] = ["bare", *worker_counts]
                if r % 2:
                    modes.reverse()
                for mode in modes:
                    if mode == "bare":
                        bare_client(tmp, [])  # its start-up alone, taken off its CPU below
                        idle_cpu = bench_poll.LAST_CPU["bare"]
                        # Its GET phase: the fetch workers' clock excludes their start too.
                        _took, gets, statuses = bare_client(tmp, requests)
                        assert statuses == {"304": feeds}, statuses
                        results.setdefault("bare", []).append(gets)
                        results.setdefault("bare cpu", []).append(
                            bench_poll.LAST_CPU["bare"] - idle_cpu
                        )
                        continue
                    log = tmp / f"fetch-{mode}-{r}.log"
                    workers = [start(["--role", "fetch"], env, log) for _ in range(int(mode))]
                    wait_logged(log, "roles started", int(mode))
                    groups = {"workers": [w.pid for w in workers], "scheduler": [scheduler.pid]}
                    meter.start(groups)
                    started = time.perf_counter()
                    since = make_all_due(engine)
                    took = wait_polled(engine, since, feeds) - started
                    cpu = meter.stop(groups)
                    stop(workers)
                    results.setdefault(f"fetch x{mode}", []).append(took)
                    for name, per_process in cpu.items():
                        results.setdefault(f"fetch x{mode} cpu {name}", []).append(sum(per_process))
                    results.setdefault(f"fetch x{mode} cpu busiest worker", []).append(
                        max(cpu["workers"])
                    )
                line = ", ".join(f"{k} {v[-1]:.2f} s" for k, v in results.items() if "cpu" not in k)
                print(f"  round {r + 1} (load {load()}): {line}", flush=True)
        finally:
            stop([scheduler])
    engine.dispose()
    report_throughput(results, feeds, worker_counts)
    return results


def report_throughput(results: dict[str, list[float]], feeds: int, counts: list[int]) -> None:
    def per_source_ms(values: list[float]) -> str:
        return spread([v / feeds * 1000 for v in values])

    bare = results["bare"]
    print(
        f"(a) {feeds} sources, every answer 304; bare aiohttp client's GETs {spread(bare)} s, "
        f"{spread([feeds / t for t in bare])} sources/s, "
        f"CPU {per_source_ms(results['bare cpu'])} ms a source"
    )
    for count in counts:
        times = results[f"fetch x{count}"]
        ratios = [b / t for b, t in zip(bare, times, strict=True)]
        print(
            f"    {count} fetch worker(s): {spread(times)} s, "
            f"{spread([feeds / t for t in times])} sources/s; "
            f"rate ratio to the bare client {spread(ratios)}"
        )
        cpu = {name: per_source_ms(results[f"fetch x{count} cpu {name}"]) for name in CPU_GROUPS}
        print(
            f"      CPU ms a source: fetch workers {cpu['workers']} (the busiest process "
            f"{cpu['busiest worker']}), Postgres backends {cpu['postgres']}, scheduler "
            f"{cpu['scheduler']}"
        )


# --- (b) the scheduler's cost per due source ------------------------------------------------
def fill_sources(engine: Engine, count: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO sources (name, url, configured_url, kind, origin, enabled,"
                " options, consecutive_errors, pending_entries, created_at)"
                " SELECT 's' || n, 'http://host' || (n % 5000) || '.example/feed/' || n,"
                " 'http://host' || (n % 5000) || '.example/feed/' || n, 'feed', 'cli', true,"
                " '{}', 0, 0, now() FROM generate_series(1, :n) AS n"
            ),
            {"n": count},
        )
        conn.execute(text("ANALYZE sources"))


def reset_due(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE sources SET next_fetch_at = now() - interval '1 minute'"))
        conn.execute(text("DELETE FROM procrastinate_jobs"))
        conn.execute(text("ANALYZE sources"))


def plain_select(engine: Engine) -> tuple[float, int]:
    started = time.perf_counter()
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, url FROM sources WHERE enabled"
                " AND (next_fetch_at <= now() OR next_fetch_at IS NULL)"
                " ORDER BY next_fetch_at NULLS FIRST, id"
            )
        ).all()
    return time.perf_counter() - started, len(rows)


def scheduler_cost(url: str, sources: int, rounds: int) -> dict:
    from newswatch.config import Settings
    from newswatch.scaled.queue import build_app, ensure_queue_tables
    from newswatch.scaled.roles import register_tasks
    from newswatch.scaled.scheduler import CLAIM_LEASE, ClaimScheduler
    from newswatch.store.db import make_engine, upgrade

    engine = make_engine(url)
    upgrade(engine)
    ensure_queue_tables(engine)
    fill_sources(engine, sources)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    results: dict[str, list[float]] = {"select": [], "claims": [], "tick": []}

    def claims_only() -> tuple[float, int]:
        scheduler = ClaimScheduler(engine, settings, app=None)  # type: ignore[arg-type]
        started = time.perf_counter()
        claimed = 0
        while batch := scheduler.claim(now := datetime.now(UTC), now + CLAIM_LEASE):
            claimed += len(batch)
        return time.perf_counter() - started, claimed

    async def full_tick() -> tuple[float, int]:
        app = build_app(engine)
        register_tasks(app, scheduler=True)
        async with app.open_async():
            scheduler = ClaimScheduler(engine, settings, app)
            scheduler._stalled_checked = time.monotonic()  # stalled jobs: not this figure
            started = time.perf_counter()
            queued = 0
            while True:
                done = await scheduler.tick()
                queued += done
                if not done:
                    break
            return time.perf_counter() - started, queued

    for r in range(rounds):
        modes = ["select", "claims", "tick"]
        if r % 2:
            modes.reverse()
        for mode in modes:
            reset_due(engine)
            if mode == "select":
                took, n = plain_select(engine)
            elif mode == "claims":
                took, n = claims_only()
            else:
                took, n = asyncio.run(full_tick())
            assert n == sources, (mode, n)
            results[mode].append(took)
        print(
            f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in results.items()),
            flush=True,
        )
    engine.dispose()
    per = {k: [t / sources * 1e6 for t in v] for k, v in results.items()}
    print(f"(b) {sources} due sources, µs per source (min/median/max):")
    print(f"    plain SELECT of the rows      {spread(per['select'])}")
    claim_ratio = [c / s for c, s in zip(results["claims"], results["select"], strict=True)]
    tick_ratio = [c / s for c, s in zip(results["tick"], results["select"], strict=True)]
    print(f"    claims (UPDATE … SKIP LOCKED) {spread(per['claims'])}: {spread(claim_ratio)}x")
    print(f"    full tick (claims + jobs)     {spread(per['tick'])}: {spread(tick_ratio)}x")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", default=os.environ.get("NEWSWATCH_TEST_DATABASE_URL", DEFAULT_URL)
    )
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--scheduler-sources", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-scheduler", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}", flush=True)
    admin = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
    out: dict[str, dict] = {}
    for part in ("throughput", "scheduler"):
        if getattr(args, f"skip_{part}"):
            continue
        name = f"bench_scaleout_{os.getpid()}_{part}"
        if part == "throughput":  # a database of its own: its backends' CPU is measured
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = make_url(args.database_url).set(database=name).render_as_string(False)
                counts = [int(n) for n in args.workers.split(",")]
                out[part] = throughput(admin, url, name, args.feeds, counts, args.rounds)
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            continue
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        try:
            out[part] = scheduler_cost(
                schema_url(args.database_url, name), args.scheduler_sources, args.rounds
            )
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    admin.dispose()
    print(f"load average {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
