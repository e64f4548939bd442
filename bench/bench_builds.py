"""Replay cost per article of this build against another build of newswatch, interleaved.

    python bench/bench_builds.py --other /path/to/other/service [--this /path/to/this/service]
        [--count 20000] [--rounds 5]

The other build is any copy whose `service/` directory imports as `newswatch`, run with this
virtualenv's interpreter and packages (no second install). For the compiled build before
issue 15 (commit 41c1b70), its extension is built in place with the compiler directly (that
commit's setup.py no longer passes today's setuptools):

    git archive 41c1b70 | tar -x -C /tmp/old
    INCLUDE=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    SUFFIX=$(python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
    cd /tmp/old/service/newswatch/grouping
    gcc -O3 -shared -fPIC -I"$INCLUDE" -o _speedups"$SUFFIX" _speedups.c

`--this` names a frozen copy of this build (`git archive HEAD`) so that editing the checkout
during a long run does not change what is measured. Both replay the same synthetic stream
(bench/synthetic_news.py) into a fresh SQLite file, one process at a time, alternating,
`--rounds` times each, with this checkout's bench_replay.py; printed: each build's cost per
article (min/median/max) and the ratio this/other round by round, in wall-clock time and in
the replay process's CPU time (the honest measure on a shared machine: a neighbour's burst
moves the wall clock, not it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_news import write

HERE = Path(__file__).resolve().parent


def one_replay(stream: Path, service: str | None) -> dict:
    """A replay in a fresh process; `service`: the other build's source directory."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if service:
        env["PYTHONPATH"] = service
    out = subprocess.run(
        [sys.executable, str(HERE / "bench_replay.py"), "--stream", str(stream)],
        env=env,
        cwd=tempfile.gettempdir(),  # not the checkout: `newswatch` comes from the path
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> str:
    return f"min {min(values):.3f}, median {statistics.median(values):.3f}, max {max(values):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--other", required=True, help="the other build's service/ directory")
    ap.add_argument("--this", help="this build's service/ directory (default: the installed)")
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-hour", type=int, default=100)
    args = ap.parse_args()
    # Per build: wall-clock and CPU ms an article, round by round.
    this: tuple[list[float], list[float]] = ([], [])
    other: tuple[list[float], list[float]] = ([], [])
    with tempfile.TemporaryDirectory() as tmp:
        stream = write(Path(tmp) / "stream.jsonl", args.count, per_hour=args.per_hour)
        for _ in range(args.rounds):
            for (wall, cpu), service in ((this, args.this), (other, args.other)):
                result = one_replay(stream, service)
                wall.append(result["total"] / args.count * 1e3)
                cpu.append(result["cpu"] / args.count * 1e3)
    print(f"replay of {args.count} articles, {args.rounds} rounds each, interleaved")
    for i, clock in enumerate(("wall clock", "CPU time")):
        print(f"{clock}: this build, ms/article:  {spread(this[i])}")
        print(f"{clock}: other build, ms/article: {spread(other[i])}")
        ratios = [a / b for a, b in zip(this[i], other[i], strict=True)]
        print(f"{clock}: this / other, round by round (target <= 1.1): {spread(ratios)}")


if __name__ == "__main__":
    main()
