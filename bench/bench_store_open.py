"""CPU of opening a store, each in a process of its own, rounds interleaved.

    python bench/bench_store_open.py [--rounds 5] [--replay FILE.jsonl]

Modes: `bare` is the limit: a Python process that opens the same SQLite file with the
standard library and reads its revision, nothing else; `head` opens a store already at the
head revision (one query, no alembic: decision 0185); `alembic` brings the same store to the
head through Alembic, as every start did before 0185; `fresh` opens an empty SQLite file
(every migration runs, as a replay or `evaluate` into a new store does). With --replay,
`newswatch replay FILE --no-alerts` into a store at head and into an empty one. Prints
process CPU (user + system) and, for the opens, the CPU of the open alone, min / median /
max over the rounds, and the load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_OPEN = """
import sys, time
if sys.argv[2] == "bare":
    import sqlite3
    start = time.process_time()
    with sqlite3.connect(sys.argv[1].removeprefix("sqlite:///")) as db:
        db.execute("SELECT version_num FROM alembic_version").fetchall()
else:
    from newswatch.store.db import make_engine, open_store, upgrade
    start = time.process_time()
    if sys.argv[2] == "alembic":
        upgrade(make_engine(sys.argv[1]))
    else:
        open_store(sys.argv[1])
print(time.process_time() - start)
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(args: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    before = _children_cpu()
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    return _children_cpu() - before, done.stdout


def _summary(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--replay", type=Path)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-open-"))
    at_head = tmp / "head.db"
    _run([sys.executable, "-c", _OPEN, f"sqlite:///{at_head}", "fresh"])
    process: dict[str, list[float]] = {}
    opening: dict[str, list[float]] = {}
    try:
        for _ in range(args.rounds):
            for mode in ("bare", "head", "alembic", "fresh"):
                url = f"sqlite:///{at_head}"
                if mode == "fresh":
                    (tmp / "fresh.db").unlink(missing_ok=True)
                    url = f"sqlite:///{tmp / 'fresh.db'}"
                cpu, out = _run([sys.executable, "-c", _OPEN, url, mode])
                process.setdefault(mode, []).append(cpu)
                opening.setdefault(mode, []).append(float(out))
            if args.replay:
                for mode in ("replay at head", "replay fresh"):
                    target = tmp / "replay.db"
                    target.unlink(missing_ok=True)
                    if mode == "replay at head":
                        shutil.copy(at_head, target)
                    env = {**os.environ, "DATABASE_URL": f"sqlite:///{target}"}
                    newswatch = [sys.executable, "-c", "from newswatch.cli import main; main()"]
                    cpu, _ = _run([*newswatch, "replay", str(args.replay), "--no-alerts"], env)
                    process.setdefault(mode, []).append(cpu)
    finally:
        shutil.rmtree(tmp)
    print(f"load average {os.getloadavg()[0]:.1f}; CPU s, min / median / max of {args.rounds}")
    for mode, values in process.items():
        alone = f"; the open alone {_summary(opening[mode])}" if mode in opening else ""
        print(f"{mode:15} process {_summary(values)}{alone}")


if __name__ == "__main__":
    main()
