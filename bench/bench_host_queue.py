"""A host with more sources than its politeness gap allows: `newswatch run` against one
loopback host, each source's lag against the gate's theoretical minimum.

    python bench/bench_host_queue.py [--sources 300] [--gap 0.1] [--demand 3] [--rounds 4]
                                     [--runs 5]

N sources of one host (the feed farm on 127.0.0.1), each asking to be fetched `demand` times as
often as the host's gap allows (interval = N * gap / demand). The limit: a host that lets one
request start per gap serves each of N sources at best once per N * gap seconds (its fair
share; no schedule does better for all of them). Measured from the farm's request log after
the first round: per source, the longest time between two of its fetches as a multiple of
N * gap (target <= 1.2); the shortest time between two requests the host saw (>= the gap,
less the farm's own jitter) and the share closer than 0.9 gap; the host's request rate as a
share of 1/gap, and the lag against the round at that rate (the queue's fairness alone);
from the fetch log, the outcomes (target: no `timeout`); from the service's log, jobs the
scheduler skipped. Each run is the real service in a process of its own (`newswatch run`),
stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feedfarm import FeedFarm, _free_port

NEWSWATCH = Path(sys.executable).with_name("newswatch")


def write_config(path: Path, farm: FeedFarm, sources: int, interval: float) -> None:
    lines = ["sources:"]
    for n in range(sources):
        lines += [f"  - name: farm-{n}", f"    url: {farm.url(n)}", f"    interval: {interval:g}s"]
    path.write_text("\n".join(lines) + "\n")


def one_run(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    interval = max(10.0, args.sources * args.gap / args.demand)  # the config's least is 10 s
    limit = limit_seconds(args)
    seconds = interval + (args.rounds + 1) * limit
    requests = workdir / "requests.log"
    with FeedFarm(args.sources, log_path=requests) as farm:
        config = workdir / "newswatch.yaml"
        write_config(config, farm, args.sources, interval)
        env = dict(
            os.environ,
            DATABASE_URL=f"sqlite:///{workdir / 'newswatch.db'}",
            NEWSWATCH_CONFIG=str(config),
            NEWSWATCH_HTTP_MIN_HOST_DELAY=str(args.gap),
            NEWSWATCH_HTTP_HOST="127.0.0.1",
            NEWSWATCH_HTTP_PORT=str(_free_port()),
            NEWSWATCH_FIRST_RUN_SPREAD=str(interval),
            NEWSWATCH_LOG_FORMAT="json",
        )
        with open(workdir / "service.log", "w") as log:
            service = subprocess.Popen([NEWSWATCH, "run"], env=env, stdout=log, stderr=log)
            try:
                time.sleep(seconds)
            finally:
                service.send_signal(signal.SIGTERM)
                stop_asked = time.time()
                service.wait(120)
                stopped = time.time() - stop_asked
    return measure(args, workdir, limit) | {"stop_seconds": stopped}


def limit_seconds(args: argparse.Namespace) -> float:
    """The least time between two fetches of each source: its fair share of the host (one
    start per gap for N sources), or its own interval when that is longer."""
    return max(args.sources * args.gap, max(10.0, args.sources * args.gap / args.demand))


def measure(args: argparse.Namespace, workdir: Path, limit: float) -> dict[str, float]:
    arrivals: dict[int, list[float]] = defaultdict(list)
    every: list[float] = []
    for line in (workdir / "requests.log").read_text().splitlines():
        at, feed = line.split()
        arrivals[int(feed)].append(float(at))
        every.append(float(at))
    every.sort()
    steady = every[0] + limit  # after the first round
    in_steady = [t for t in every if t >= steady]
    rate_share = (len(in_steady) - 1) / (in_steady[-1] - in_steady[0]) * args.gap
    worst = []
    for n in range(args.sources):
        gaps = [b - a for a, b in itertools.pairwise(arrivals.get(n, [])) if b >= steady]
        worst.append(max(gaps) / limit if gaps else float("inf"))
    host_gaps = [b - a for a, b in itertools.pairwise(every)]
    with sqlite3.connect(workdir / "newswatch.db") as db:
        outcomes = dict(db.execute("SELECT outcome, COUNT(*) FROM fetches GROUP BY outcome"))
        waits = [w for (w,) in db.execute("SELECT host_wait_seconds FROM sources") if w is not None]
    skipped = (workdir / "service.log").read_text().count("maximum number of running instances")
    return {
        "fetches": sum(outcomes.values()),
        "timeouts": outcomes.get("timeout", 0),
        "not_ok": sum(n for o, n in outcomes.items() if o not in ("ok", "not_modified")),
        "skipped_jobs": skipped,
        "sources_fetched": len(arrivals),
        "min_host_gap": min(host_gaps),
        # Arrivals closer than 0.9 gap: the farm's own loop stalls bunch what it logs.
        "close_gap_share": sum(g < 0.9 * args.gap for g in host_gaps) / len(host_gaps),
        # Requests a second the host saw once saturated, as a share of 1/gap: below 1 by the
        # event loop's lateness in waking each release (a gap is never shortened to make up).
        "host_rate_share": rate_share,
        "lag_ratio_median": statistics.median(worst),
        "lag_ratio_max": max(worst),
        # The same against the round at the rate the host achieved: the queue's own fairness.
        "fair_ratio_median": statistics.median(worst) * rate_share,
        "fair_ratio_max": max(worst) * rate_share,
        "host_wait_median": statistics.median(waits) if waits else float("nan"),
        "host_wait_max": max(waits) if waits else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.1, help="NEWSWATCH_HTTP_MIN_HOST_DELAY")
    parser.add_argument("--demand", type=float, default=3.0, help="asked / allowed")
    parser.add_argument("--rounds", type=int, default=4, help="rounds measured after the first")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(
        f"{args.sources} sources of one host, gap {args.gap:g}s, each asking {args.demand:g}x "
        f"what the gap allows; limit: once per {limit_seconds(args):g}s each"
    )
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            result = one_run(args, Path(tmp))
        results.append(result)
        print(f"run {run + 1}: " + ", ".join(f"{k}={v:.3g}" for k, v in result.items()))
    print("over the runs (min / median / max):")
    for key in results[0]:
        values = [r[key] for r in results]
        print(
            f"  {key:18} {min(values):10.3g} {statistics.median(values):10.3g} {max(values):10.3g}"
        )


if __name__ == "__main__":
    main()
