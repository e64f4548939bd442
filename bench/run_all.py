"""Every benchmark at a size that finishes in under 10 minutes on 2 cores, and one table of
the ratios each is judged by: target, measured min/median/max, met or not.

    python bench/run_all.py [--only NAME ...] [--markdown]      (or: make bench)

Each benchmark runs in a process of its own, one after the other, with the sizes below (its
own script's defaults are the full sizes: docs/benchmarks.md says how to re-run each). Their
figures are read from what they print; a benchmark whose output is not understood, or that
fails, shows as such in the table instead of being left out. Min/median/max are over the
benchmark's own interleaved rounds where it has them; where it prints one figure (a median
over its samples) that figure is all three. "met" judges the min for a "higher is better"
target and the max for a "lower is better" one: every round must meet it.
`--markdown` prints the table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
NUMBER = r"([0-9][0-9,]*\.?[0-9]*)"


@dataclass
class Row:
    benchmark: str
    measure: str  # what the ratio or figure is
    target: str  # e.g. ">= 0.50"
    values: tuple[float, float, float] | None  # min, median, max; None: not understood

    @property
    def met(self) -> str:
        if self.values is None:
            return "no figure"
        op, bound = self.target.split()
        low, _median, high = self.values
        ok = low >= float(bound) if op == ">=" else high <= float(bound)
        return "met" if ok else "NOT met"


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def _triple(pattern: str, output: str) -> tuple[float, float, float] | None:
    """min / median / max printed as 'a / b / c' after `pattern`."""
    found = re.search(pattern + rf"\s*{NUMBER}\s*/\s*{NUMBER}\s*/\s*{NUMBER}", output)
    return tuple(_num(g) for g in found.groups()) if found else None  # type: ignore[return-value]


def _single(pattern: str, output: str) -> tuple[float, float, float] | None:
    found = re.search(pattern + rf"\s*{NUMBER}", output)
    return (_num(found.group(1)),) * 3 if found else None  # type: ignore[return-value]


# --- what each benchmark's output says ---------------------------------------------------
def poll_rows(output: str, json_path: Path) -> list[Row]:
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    rows = []
    for key, label, baseline in (
        ("unchanged-2000", "run --once, 2,000 unchanged feeds", "bare aiohttp client"),
        ("changed-200", "run --once, 200 changed feeds", "feedparser, as many processes"),
    ):
        ratio = results.get(key, {}).get("ratio")
        values = (min(ratio), statistics.median(ratio), max(ratio)) if ratio else None
        target = ">= 0.50" if key.startswith("unchanged") else ">= 0.70"
        rows.append(Row("bench_poll", f"{label}: rate / {baseline}'s", target, values))
    cpu = results.get("unchanged-2000", {}).get("cpu_ratio")
    values = (min(cpu), statistics.median(cpu), max(cpu)) if cpu else None
    measure = "the same in CPU seconds (bare client's / newswatch's; less moved by load)"
    rows.insert(1, Row("bench_poll", measure, ">= 0.50", values))
    return rows


def config_rows(output: str, _json: Path) -> list[Row]:
    found = re.search(r"safeyaml\.load \(ours\)\s+" + r"\s+".join([NUMBER] * 3), output)
    base = re.search(r"baseline: yaml\.load\(CSafeLoader\)\s+" + r"\s+".join([NUMBER] * 3), output)
    values = None
    if found and base:
        mid = _num(base.group(2))
        values = tuple(_num(g) / mid for g in found.groups())
    return [Row("bench_config", "safeyaml.load CPU / bare CSafeLoader's median", "<= 1.20", values)]  # type: ignore[arg-type]


def cli_rows(output: str, _json: Path) -> list[Row]:
    return [
        Row(
            "cli_startup",
            "`newswatch --help` CPU seconds",
            "<= 0.30",
            _triple(r"--help\S*", output),
        )
    ]


def grouping_rows(output: str, _json: Path) -> list[Row]:
    return [
        Row(
            "bench_grouping",
            "Clusterer.add / datasketch MinHash(64)+LSH, same input, per block",
            "<= 1.00",
            _triple(r"add\(\) / baseline, block by block \(target <= 1\.0\):\s*min", output)
            or _min_median_max(r"add\(\) / baseline, block by block[^:]*:", output),
        ),
        Row(
            "bench_grouping",
            "add() cost late / early (window full vs filling)",
            "<= 1.30",
            _single(r"ratio late/early \(median\):", output),
        ),
    ]


def _min_median_max(pattern: str, output: str) -> tuple[float, float, float] | None:
    found = re.search(
        pattern + rf"\s*min {NUMBER}, median {NUMBER}, max {NUMBER}", output, re.IGNORECASE
    )
    return tuple(_num(g) for g in found.groups()) if found else None  # type: ignore[return-value]


def rules_rows(output: str, _json: Path) -> list[Row]:
    return [
        Row(
            "bench_rules",
            "matcher p99 ms per article, 1,000 rules",
            "<= 1.00",
            _single(r"matcher \(1,000 rules\):\s*median [0-9.]+ ms, p99", output),
        ),
        Row(
            "bench_rules",
            "speed-up over each rule's own query (median)",
            ">= 20",
            _single(r"speed-up \(median of per-article ratios\):", output),
        ),
    ]


def alert_latency_rows(output: str, _json: Path) -> list[Row]:
    try:
        report = json.loads(output[output.index("{") :])
    except ValueError:
        return [Row("bench_alert_latency", "p99 ms, article to webhook", "<= 1000", None)]
    rows = []
    for mode in ("inline", "thread"):
        p99 = report.get(f"{mode}_ms", {}).get("p99")
        values = (p99, p99, p99) if p99 is not None else None
        rows.append(
            Row("bench_alert_latency", f"p99 ms, article to webhook ({mode})", "<= 1000", values)
        )
    return rows


def host_queue_rows(output: str, _json: Path) -> list[Row]:
    found = re.search(r"fair_ratio_median\s+" + r"\s+".join([NUMBER] * 3), output)
    values = tuple(_num(g) for g in found.groups()) if found else None
    return [
        Row(
            "bench_host_queue",
            "a source's longest gap / its fair share (N x gap)",
            "<= 1.20",
            values,  # type: ignore[arg-type]
        )
    ]


def api_load_rows(output: str, _json: Path) -> list[Row]:
    under = output.split("under load", 1)[-1] if "under load" in output else ""
    return [
        Row(
            "bench_api_load",
            "ingestion under API load, % of without",
            ">= 80",
            _triple(r"ingestion % of idle median", under),
        ),
        Row(
            "bench_api_load",
            "/healthz p99 ms under API load",
            "<= 100",
            _triple(r"/healthz p99 ms", under),
        ),
    ]


@dataclass
class Benchmark:
    name: str
    args: list[str]
    rows: Callable[[str, Path], list[Row]]


BENCHMARKS = [
    Benchmark(
        "bench_poll",
        ["--feeds", "2000", "--changed-feeds", "200", "--rounds", "5"],
        poll_rows,
    ),
    Benchmark("bench_config", ["--sources", "10000", "--rounds", "5"], config_rows),
    Benchmark("cli_startup", ["--rounds", "5"], cli_rows),
    Benchmark("bench_grouping", ["--count", "30000"], grouping_rows),
    Benchmark("bench_rules", ["--articles", "300"], rules_rows),
    Benchmark("bench_alert_latency", ["--count", "100"], alert_latency_rows),
    Benchmark(
        "bench_host_queue",
        ["--sources", "100", "--rounds", "3", "--runs", "5"],
        host_queue_rows,
    ),
    Benchmark("bench_api_load", ["--window", "10", "--rounds", "5"], api_load_rows),
]


def run(bench: Benchmark, tmp: Path) -> tuple[list[Row], float, str]:
    json_path = tmp / f"{bench.name}.json"
    args = [*bench.args, "--json", str(json_path)] if bench.name == "bench_poll" else bench.args
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{bench.name}.py"), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - started
    output = done.stdout + done.stderr
    rows = bench.rows(output, json_path)
    return rows, took, output


def table(rows: list[Row], markdown: bool) -> str:
    def cell(values: tuple[float, float, float] | None) -> str:
        return " / ".join(f"{v:.3g}" for v in values) if values else "-"

    if markdown:
        lines = [
            "| benchmark | measure | target | min / median / max | |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.benchmark} | {r.measure} | {r.target} | {cell(r.values)} | {r.met} |"
            for r in rows
        ]
        return "\n".join(lines)
    width = max(len(r.measure) for r in rows)
    lines = [f"{'benchmark':20} {'measure':{width}} {'target':9} {'min / median / max':24} met"]
    lines += [
        f"{r.benchmark:20} {r.measure:{width}} {r.target:9} {cell(r.values):24} {r.met}"
        for r in rows
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="run only these benchmarks")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--log", type=Path, help="keep every benchmark's output in this folder")
    args = ap.parse_args()
    chosen = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    started = datetime.now(UTC)
    load = os.getloadavg()[0]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for bench in chosen:
            print(f"running {bench.name} {' '.join(bench.args)}", file=sys.stderr, flush=True)
            found, took, output = run(bench, Path(tmp))
            print(f"  {took:.0f} s", file=sys.stderr, flush=True)
            for row in found:  # as they come: a long run shows its figures on the way
                print(f"  {row.measure}: {row.values} ({row.met})", file=sys.stderr, flush=True)
            if args.log:
                args.log.mkdir(parents=True, exist_ok=True)
                (args.log / f"{bench.name}.txt").write_text(output)
            rows += found
    elapsed = (datetime.now(UTC) - started).total_seconds()
    print(
        f"{started:%Y-%m-%d %H:%M} UTC, {platform.node() or 'host'}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {load:.1f} at the start; "
        f"{elapsed / 60:.1f} minutes"
    )
    print(table(rows, args.markdown))


if __name__ == "__main__":
    main()
