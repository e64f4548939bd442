"""Polling against the limit: a whole `newswatch run --once` against the tools a user would
pick instead, on a farm of feeds on loopback.

    python bench/bench_poll.py [--feeds 2000] [--changed-feeds 500] [--rounds 5]
                               [--feeds-per-host 1] [--skip-changed]

The farm (bench/feedfarm.py, a process of its own) serves the feeds on many loopback ports,
`--feeds-per-host` feeds a port: each port is a host to both clients, and newswatch keeps its
politeness on (NEWSWATCH_HTTP_PER_HOST_CONCURRENCY 2, a 1 s gap between a host's request
starts, NEWSWATCH_HTTP_MAX_CONNECTIONS 100 requests under way). Modes, each interleaved with
its baseline in every round (min/median/max over `--rounds`):

(a) unchanged: every feed answers 304. newswatch: `newswatch run --once` in a process of its
    own, start-up included (config file of N sources, store, sources synced, the grouping
    window, the fetches, the writes; its modules compiled to bytecode before the rounds, as
    an installed package's are). Baseline: a bare aiohttp client in a process of its own
    doing the same conditional GETs (the same ETags, the same bound of 100 requests under way,
    the same hosts). Target: newswatch's time <= 2x the bare client's (>= 50 % of its rate).
    The bare client's GET phase alone (its process start excluded) is printed too.
(b) changed: every feed has 20 new entries (the farm moves a generation each round).
    newswatch: `newswatch run --once` with event grouping off (fetch, parse in
    NEWSWATCH_PARSE_WORKERS processes, store, record). Baseline: feedparser.parse alone over
    the same bodies in a pool of the same number of processes (started before the clock, the
    bodies in memory). Target: newswatch's rate >= 70 % of feedparser's.
(b') the same changed run with event grouping on, for information (no target).

Ratios are rate(newswatch) / rate(baseline) = time(baseline) / time(newswatch), per round.
`--json PATH` writes every sample (bench/run_all reads it). With BENCH_POLL_PROFILE=DIR each
`run --once` runs under py-spy (on PATH), its raw samples written to DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

MAX_CONNECTIONS = 100  # newswatch's default NEWSWATCH_HTTP_MAX_CONNECTIONS


# --- the bare client: what a user would write with aiohttp alone ---------------------------
async def _bare_get_all(requests: list[tuple[str, str | None]], bound: int) -> list[int]:
    import aiohttp

    limit = asyncio.Semaphore(bound)
    connector = aiohttp.TCPConnector(limit=bound)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(url: str, etag: str | None) -> int:
            headers = {"If-None-Match": etag} if etag else {}
            async with limit, session.get(url, headers=headers) as response:
                await response.read()
                return response.status

        return await asyncio.gather(*(one(u, e) for u, e in requests))


def bare_client_main(path: str, bound: int) -> None:
    """`bench_poll.py --bare-client FILE`: the GETs of FILE ([[url, etag], ...]); prints the
    GET phase's seconds and the statuses seen."""
    requests = [tuple(r) for r in json.loads(Path(path).read_text())]
    started = time.perf_counter()
    statuses = asyncio.run(_bare_get_all(requests, bound))  # type: ignore[arg-type]
    took = time.perf_counter() - started
    counts: dict[int, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    print(json.dumps({"seconds": took, "statuses": counts}))


# --- newswatch and the baselines, each in a process of its own ----------------------------
def write_config(path: Path, urls: list[str], grouping: bool) -> None:
    lines = ["sources:"]
    for i, url in enumerate(urls):
        lines += [f"  - name: farm-{i}", f"    url: {url}", "    interval: 10m"]
    lines += ["grouping:", f"  enabled: {'true' if grouping else 'false'}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def children_cpu() -> float:
    """CPU seconds (user + system) of the child processes ended so far, their own children
    (parse workers) included: beside wall time, a measure the neighbours' load moves less."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


LAST_CPU: dict[str, float] = {}  # the CPU seconds of the last process each mode ran


# The other build of newswatch (`--other SERVICE_DIR`), run in every round beside this one.
OTHER: dict[str, str] = {}


def run_once(tmp: Path, config: Path, build: str = "newswatch") -> tuple[float, str]:
    """`newswatch run --once` of this build ("newswatch") or of the other one ("other"),
    each on a store of its own; its wall seconds and summary line (CPU in LAST_CPU[build])."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp / f'{build}.db'}",
        "NEWSWATCH_CONFIG": str(config),
        "NEWSWATCH_LOG_LEVEL": "WARNING",
    }
    env.pop("PYTHONPATH", None)
    if build == "other":
        env["PYTHONPATH"] = OTHER["service"]
    command = [sys.executable, "-m", "newswatch", "run", "--once"]
    profile_dir = os.environ.get("BENCH_POLL_PROFILE")
    if profile_dir:  # py-spy's raw samples of each run, for finding where the time goes
        out = Path(profile_dir) / f"{config.stem}-{build}-{time.time():.0f}.txt"
        command = ["py-spy", "record", "-r", "100", "-f", "raw", "-o", str(out), "--", *command]
    started, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - started
    LAST_CPU[build] = children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"newswatch run --once ({build}) failed:\n{done.stderr[-3000:]}")
    summary = [line for line in done.stderr.splitlines() if "sources polled" in line]
    return took, summary[-1] if summary else done.stderr[-300:]


def compile_bytecode() -> None:
    """Each build's modules compiled to bytecode before the clock, as `pip install` does for
    an installed package (the Docker image): an editable checkout run with
    PYTHONDONTWRITEBYTECODE set compiled every newswatch module from source in every run."""
    import compileall

    import newswatch

    packages = [Path(newswatch.__file__).parent]
    if OTHER:
        packages.append(Path(OTHER["service"]) / "newswatch")
    for package in packages:
        compileall.compile_dir(package, quiet=1)


def builds() -> list[str]:
    return ["newswatch", "other"] if OTHER else ["newswatch"]


def rotated(modes: list[str], r: int) -> list[str]:
    """The round's order: each mode first in turn, so a neighbour's burst favours none."""
    return modes[r % len(modes) :] + modes[: r % len(modes)]


def bare_client(tmp: Path, requests: list[tuple[str, str | None]]) -> tuple[float, float, dict]:
    path = tmp / "requests.json"
    path.write_text(json.dumps(requests))
    started, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(
        [sys.executable, __file__, "--bare-client", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    took = time.perf_counter() - started
    LAST_CPU["bare"] = children_cpu() - cpu
    report = json.loads(done.stdout)
    return took, report["seconds"], report["statuses"]


def stored_validators(db: Path) -> dict[str, str | None]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT url, etag FROM sources"))


def stored_articles(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM articles").fetchone()[0]


def _parse(body: bytes) -> tuple[int, float]:
    """The entries of one body and the CPU seconds its parse took."""
    import feedparser

    cpu = time.process_time()
    entries = len(feedparser.parse(body).entries)
    return entries, time.process_time() - cpu


def _warm(_: int) -> int:
    import feedparser  # noqa: F401  (imported before the clock, as newswatch's workers do)

    return os.getpid()


def feedparser_pool(pool: ProcessPoolExecutor, bodies: list[bytes]) -> tuple[float, int]:
    """Wall seconds to parse `bodies` in the pool, and the entries found; the pool's CPU
    seconds for them in LAST_CPU["feedparser"]."""
    started = time.perf_counter()
    parsed = list(pool.map(_parse, bodies))
    took = time.perf_counter() - started
    LAST_CPU["feedparser"] = sum(cpu for _entries, cpu in parsed)
    return took, sum(entries for entries, _cpu in parsed)


def fetch_bodies(urls: list[str]) -> list[bytes]:
    import aiohttp

    async def all_bodies() -> list[bytes]:
        connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(url: str) -> bytes:
                async with session.get(url) as response:
                    return await response.read()

            return await asyncio.gather(*(one(u) for u in urls))

    return asyncio.run(all_bodies())


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def parse_workers() -> int:
    from newswatch.config import Settings

    return Settings().parse_workers  # type: ignore[call-arg]


def unchanged_mode(farm, tmp: Path, feeds: int, rounds: int, results: dict) -> None:  # type: ignore[no-untyped-def]
    urls = [farm.url(i) for i in range(feeds)]
    config, first = tmp / f"unchanged-{feeds}.yaml", tmp / f"first-{feeds}.yaml"
    write_config(config, urls, grouping=True)
    write_config(first, urls, grouping=False)
    for build in builds():
        (tmp / f"{build}.db").unlink(missing_ok=True)
        # The first pass stores every feed's entries (grouping off: quicker, and a run that
        # stores nothing does not read the grouping window anyway).
        took, summary = run_once(tmp, first, build)
        print(f"  first pass of {build} (every feed new, grouping off): {took:.1f} s; {summary}")
    etags = stored_validators(tmp / "newswatch.db")
    requests = [(u, etags.get(u)) for u in urls]
    assert all(e for _u, e in requests), "a feed has no stored ETag"
    times: dict[str, list[float]] = {mode: [] for mode in ["bare", *builds()]}
    cpu: dict[str, list[float]] = {mode: [] for mode in times}
    bare_gets: list[float] = []
    for r in range(rounds):
        for mode in rotated(list(times), r):
            if mode == "bare":
                took, t_gets, statuses = bare_client(tmp, requests)
                assert statuses == {"304": feeds}, statuses
                bare_gets.append(t_gets)
            else:
                took, summary = run_once(tmp, config, mode)
                assert " 0 new articles, 0 with errors" in summary, summary
            times[mode].append(took)
            cpu[mode].append(LAST_CPU[mode])
        print(
            f"  round {r + 1}: "
            + "; ".join(_round_figures(mode, "bare", times, cpu) for mode in builds())
            + f"; bare aiohttp client {times['bare'][-1]:.2f} s (its GETs {bare_gets[-1]:.2f} s,"
            f" CPU {cpu['bare'][-1]:.2f} s); load average {os.getloadavg()[0]:.1f}"
        )
    result = _result(results, f"unchanged-{feeds}", "bare", times, cpu, target=0.5)
    result["bare_gets_s"] = bare_gets
    print(
        f"(a) {feeds} unchanged feeds: newswatch {spread(times['newswatch'])} s, bare client "
        f"{spread(times['bare'])} s (GET phase {spread(bare_gets)} s); rate ratio "
        f"min/median/max {spread(result['ratio'])} (target >= 0.50); CPU ratio "
        f"{spread(result['cpu_ratio'])}"
    )
    _other_summary(result, "bare", times, cpu)


def _result(
    results: dict,
    key: str,
    baseline: str,
    times: dict[str, list[float]],
    cpu: dict[str, list[float]],
    target: float,
) -> dict:
    """One mode's samples and per-round ratios against its baseline, kept under `key` in
    `results` (the --json file): newswatch's and the baseline's seconds, the rate and CPU
    ratios, the target."""
    results[key] = {
        "newswatch_s": times["newswatch"],
        f"{baseline}_s": times[baseline],
        "ratio": _ratios("newswatch", baseline, times),
        "cpu_ratio": _ratios("newswatch", baseline, cpu),
        "target": target,
    }
    return results[key]


def _round_figures(
    build: str, baseline: str, times: dict[str, list[float]], cpu: dict[str, list[float]]
) -> str:
    return (
        f"{build} {times[build][-1]:.2f} s (CPU {cpu[build][-1]:.2f} s): rate ratio "
        f"{times[baseline][-1] / times[build][-1]:.2f}, CPU ratio "
        f"{cpu[baseline][-1] / cpu[build][-1]:.2f}"
    )


def _ratios(build: str, baseline: str, values: dict[str, list[float]]) -> list[float]:
    """Per round, the baseline's time (or CPU) over the build's: the build's relative rate."""
    return [b / n for b, n in zip(values[baseline], values[build], strict=True)]


def _other_summary(
    result: dict, baseline: str, times: dict[str, list[float]], cpu: dict[str, list[float]]
) -> None:
    """The other build's ratios, and this build's over the other's, round by round."""
    if not OTHER:
        return
    result["other_ratio"] = _ratios("other", baseline, times)
    result["other_cpu_ratio"] = _ratios("other", baseline, cpu)
    result["this_over_other"] = _ratios("newswatch", "other", times)
    result["this_over_other_cpu"] = _ratios("newswatch", "other", cpu)
    print(
        f"    other build ({OTHER['service']}): rate ratio {spread(result['other_ratio'])}, CPU "
        f"ratio {spread(result['other_cpu_ratio'])}; this build's rate / the other's "
        f"{spread(result['this_over_other'])} (CPU {spread(result['this_over_other_cpu'])})"
    )


def changed_mode(farm, tmp: Path, feeds: int, rounds: int, results: dict) -> None:  # type: ignore[no-untyped-def]
    urls = [farm.url(i) for i in range(feeds)]
    plain, grouped = tmp / "changed-plain.yaml", tmp / "changed-grouped.yaml"
    write_config(plain, urls, grouping=False)
    write_config(grouped, urls, grouping=True)
    workers = parse_workers()
    for build in builds():
        (tmp / f"{build}.db").unlink(missing_ok=True)
        run_once(tmp, plain, build)  # every feed known: each round then brings 20 new entries
    times: dict[str, list[float]] = {mode: [] for mode in ["feedparser", *builds()]}
    cpu: dict[str, list[float]] = {mode: [] for mode in times}
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_warm, range(workers)))
        for r in range(rounds):
            farm.bump()
            bodies = fetch_bodies(urls)
            for mode in rotated(list(times), r):
                if mode == "feedparser":
                    took, entries = feedparser_pool(pool, bodies)
                    assert entries == 20 * feeds, entries
                else:
                    before = stored_articles(tmp / f"{mode}.db")
                    took, summary = run_once(tmp, plain, mode)
                    stored = stored_articles(tmp / f"{mode}.db") - before
                    assert stored == 20 * feeds, summary
                times[mode].append(took)
                cpu[mode].append(LAST_CPU[mode])
            print(
                f"  round {r + 1}: "
                + "; ".join(_round_figures(mode, "feedparser", times, cpu) for mode in builds())
                + f"; feedparser in {workers} processes {times['feedparser'][-1]:.2f} s (CPU "
                f"{cpu['feedparser'][-1]:.2f} s); load average {os.getloadavg()[0]:.1f}"
            )
        # (b'): with grouping, after the rounds (its window would slow (b) otherwise).
        farm.bump()
        t_grouped, _summary = run_once(tmp, grouped)
    result = _result(results, f"changed-{feeds}", "feedparser", times, cpu, target=0.7)
    result["workers"] = workers
    print(
        f"(b) {feeds} changed feeds (20 new entries each), grouping off: newswatch "
        f"{spread(times['newswatch'])} s, feedparser alone in {workers} processes "
        f"{spread(times['feedparser'])} s; rate ratio min/median/max {spread(result['ratio'])} "
        f"(target >= 0.70); CPU ratio {spread(result['cpu_ratio'])} (newswatch's CPU with its "
        f"start-up and workers, feedparser's parses alone)"
    )
    _other_summary(result, "feedparser", times, cpu)
    grouped_ratio = statistics.median(times["feedparser"]) / t_grouped
    print(
        f"(b') the same with event grouping on, once: {t_grouped:.2f} s, ratio to feedparser's "
        f"median {grouped_ratio:.2f} (no target)"
    )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--bare-client":
        bare_client_main(sys.argv[2], MAX_CONNECTIONS)
        return
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]  # rounds as they end
    ap = argparse.ArgumentParser()
    ap.add_argument("--feeds", type=int, nargs="*", default=[2000, 10000])
    ap.add_argument("--changed-feeds", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--feeds-per-host", type=int, default=1)
    ap.add_argument("--skip-changed", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--other",
        type=Path,
        help="another build's service/ directory: its `run --once` runs in every round too",
    )
    args = ap.parse_args()
    if args.other:
        OTHER["service"] = str(args.other.resolve())
    from feedfarm import PORTS_PER_PROCESS, FeedFarm

    compile_bytecode()

    results: dict = {}
    most = max([*args.feeds, 0 if args.skip_changed else args.changed_feeds])
    hosts = -(-most // args.feeds_per_host)
    print(
        f"feed farm: {most} feeds on {hosts} loopback ports (server processes of at most "
        f"{PORTS_PER_PROCESS} ports); {os.cpu_count()} cores; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmpdir, FeedFarm(most, hosts=hosts) as farm:
        tmp = Path(tmpdir)
        for feeds in args.feeds:
            unchanged_mode(farm, tmp, feeds, args.rounds, results)
        if not args.skip_changed:
            changed_mode(farm, tmp, args.changed_feeds, args.rounds, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
