"""CPU time of one `newswatch` command line, against starting Python and doing nothing.

    python bench/cli_startup.py [--rounds 7]

Each round runs, in turn, as child processes of this one: `python -c pass` (the baseline: no
Python command can start for less), `newswatch --help`, `newswatch --version` and
`newswatch check-config deploy/newswatch.example.yaml` (a command that loads its own
dependencies: the config's, not the store's), and importing every command's module (what
each command line cost before commands were loaded lazily). The CPU time of each child (user
+ system, from the operating system's accounting of finished children) and its wall time are
kept; min/median/max over the rounds are printed, each median also as a multiple of the
baseline's.
Target: `newswatch --help` under 0.3 s of CPU.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEWSWATCH = str(Path(sys.executable).parent / "newswatch")  # the installed console script

MODES: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "newswatch --help": [NEWSWATCH, "--help"],
    "newswatch --version": [NEWSWATCH, "--version"],
    "newswatch check-config": [
        NEWSWATCH,
        "check-config",
        str(ROOT / "deploy" / "newswatch.example.yaml"),
    ],
    "all command modules": [
        sys.executable,
        "-c",
        "from newswatch.cli import COMMANDS, load_module\n"
        "for module, _help in COMMANDS.values(): load_module(module)",
    ],
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(argv: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of `argv` to completion."""
    cpu, wall = children_cpu(), time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ))
    return children_cpu() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    wall: dict[str, list[float]] = {mode: [] for mode in MODES}
    for argv in MODES.values():  # warm the file cache; not counted
        measure(argv)
    for _ in range(args.rounds):
        for mode, argv in MODES.items():  # interleaved: a busy moment hits every mode alike
            c, w = measure(argv)
            cpu[mode].append(c)
            wall[mode].append(w)
    base = statistics.median(cpu["python -c pass"])
    print(f"{args.rounds} rounds; CPU s min/median/max (x baseline median), wall s median")
    for mode in MODES:
        c = cpu[mode]
        print(
            f"{mode:24} {min(c):.3f} / {statistics.median(c):.3f} / {max(c):.3f}"
            f"  ({statistics.median(c) / base:5.1f}x)   wall {statistics.median(wall[mode]):.3f}"
        )


if __name__ == "__main__":
    main()
