"""B³ precision, recall and F1 of grouping on each dev corpus, whole and in two halves by
story: a tuning half (the only one a change may be tuned on) and a checking half (read, never
tuned on). A gap above 0.03 between the halves is over-fitting to remove (issue 18,
docs/decisions/0174-tuning-and-checking-halves.md).

    python bench/grouping_halves.py            # both corpora, default settings
    python bench/grouping_halves.py --json     # one JSON object a line
    python bench/grouping_halves.py --cost-against OLD/service   # ms per add(), interleaved
    python bench/grouping_halves.py --mixes tuning   # the half's mixed events, with years

`--cost-against` replays each whole corpus in memory, this checkout's grouping and another's
(a `service` directory, e.g. of `git archive main`) in turns, each in a fresh process, and
prints the median ms per `Clusterer.add` of each run, then min / median / max per tree and
the median of the paired differences, with the load average.

A story's half is the parity of the first byte of the SHA-256 of its group key: the same on
every machine and in every run. The group key is the story label, except on ECB+, whose
topics each hold two events of one kind ("ecb-31_ecb", "ecb-31_ecbplus"): both go to one
half, so that each half keeps the corpus's hard case (same kind, different event). Each
half is replayed as a stream of its own (its articles in file order): tuning never sees a
checking story, not even as a confuser.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from newswatch.grouping.cluster import Clusterer
from newswatch.grouping.settings import GroupingSettings
from newswatch.replay import bcubed
from shared_data import shared_corpus

CORPORA = ("ecbplus-dev.jsonl", "uci-headlines-dev.jsonl")
HALVES = ("tuning", "checking")


def group_key(corpus: str, label: str) -> str:
    """The key whose hash picks a story's half (see the module docstring)."""
    if corpus.startswith("ecbplus"):
        return label.rsplit("_", 1)[0]
    return label


def half_of(corpus: str, label: str) -> str:
    digest = hashlib.sha256(group_key(corpus, label).encode("utf-8")).digest()
    return HALVES[digest[0] & 1]


def load(corpus: str) -> list[dict[str, Any]]:
    path = shared_corpus(f"grouping/{corpus}")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def timestamp(row: dict[str, Any]) -> float:
    published = row.get("published")
    if not published:
        return 0.0
    return datetime.fromisoformat(published.replace("Z", "+00:00")).timestamp()


def replay(
    rows: Iterable[dict[str, Any]], make: Callable[[], Clusterer] | None = None
) -> tuple[float, float, float]:
    """B³ (precision, recall, F1) of one in-memory replay of `rows` in their order."""
    clusterer = make() if make else Clusterer(GroupingSettings())
    gold: dict[str, str] = {}
    index: dict[str, int] = {}
    for i, row in enumerate(rows):
        clusterer.add(i, row["title"], row["text"], timestamp(row))
        gold[row["id"]] = row["event"]
        index[row["id"]] = i
    final = {k: clusterer.resolve(clusterer.article_event[i]) for k, i in index.items()}
    return bcubed(gold, final)


def measure(
    corpus: str, make: Callable[[], Clusterer] | None = None
) -> dict[str, tuple[float, float, float]]:
    """B³ of the whole corpus and of each half replayed alone."""
    rows = load(corpus)
    out = {"all": replay(rows, make)}
    for half in HALVES:
        out[half] = replay([r for r in rows if half_of(corpus, r["event"]) == half], make)
    return out


def mixes(rows: list[dict[str, Any]]) -> list[tuple[int, dict[str, tuple[int, dict[str, int]]]]]:
    """The events of one replay of `rows` that hold reports of several gold stories, biggest
    first: (event id, {story: (its reports there, {year: reports stating it})}). The years
    are the year figures grouping itself reads (title and lead): the evidence that tells two
    events of a kind apart (decision 0189)."""
    clusterer = Clusterer(GroupingSettings())
    for i, row in enumerate(rows):
        clusterer.add(i, row["title"], row["text"], timestamp(row))
    events: dict[int, dict[str, tuple[int, dict[str, int]]]] = {}
    for i, row in enumerate(rows):
        event = events.setdefault(clusterer.resolve(clusterer.article_event[i]), {})
        count, years = event.get(row["event"], (0, {}))
        for year in clusterer.features(row["title"], row["text"]).years:  # what _years reads
            years[year[1:]] = years.get(year[1:], 0) + 1
        event[row["event"]] = (count + 1, years)
    mixed = [(k, v) for k, v in events.items() if len(v) > 1]
    return sorted(mixed, key=lambda kv: -sum(n for n, _ in kv[1].values()))


def print_mixes(corpus: str, half: str) -> None:
    rows = load(corpus)
    if half != "all":
        rows = [r for r in rows if half_of(corpus, r["event"]) == half]
    for event, stories in mixes(rows):
        print(f"{corpus} {half}: event {event}")
        for story, (n, years) in stories.items():
            stated = ", ".join(f"{y} x{c}" for y, c in sorted(years.items(), key=lambda yc: -yc[1]))
            print(f"    {story:<40} {n:>4} reports; years: {stated or '-'}")


def time_replay(corpus: str) -> float:
    """Median ms per `Clusterer.add` over one in-memory replay of the whole corpus."""
    rows = load(corpus)
    clusterer = Clusterer(GroupingSettings())
    clock = time.perf_counter_ns
    costs = []
    for i, row in enumerate(rows):
        start = clock()
        clusterer.add(i, row["title"], row["text"], timestamp(row))
        costs.append(clock() - start)
    return statistics.median(costs) / 1e6


def compare_cost(other: Path, corpora: Iterable[str], rounds: int) -> None:
    """This checkout's grouping against `other`'s, rounds interleaved, a process a run."""
    trees = {"this": Path(__file__).resolve().parents[1] / "service", "other": other.resolve()}
    costs: dict[tuple[str, str], list[float]] = {}
    for n in range(rounds):
        for corpus in corpora:
            for name, service in trees.items():
                env = os.environ | {"PYTHONPATH": str(service)}
                run = subprocess.run(
                    [sys.executable, __file__, "--time-replay", corpus],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                cost = float(run.stdout)
                costs.setdefault((corpus, name), []).append(cost)
                load = os.getloadavg()[0]
                print(f"round {n + 1} {corpus:<26} {name:<5} {cost:.4f} ms  load {load:.1f}")
    for corpus in corpora:
        for name in trees:
            c = costs[(corpus, name)]
            print(
                f"{corpus:<26} {name:<5} min {min(c):.4f} median {statistics.median(c):.4f} "
                f"max {max(c):.4f} ms an article"
            )
        diffs = [
            a - b for a, b in zip(costs[(corpus, "this")], costs[(corpus, "other")], strict=True)
        ]
        print(f"{corpus:<26} this - other, paired: median {statistics.median(diffs):+.4f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    parser.add_argument("--corpus", action="append", choices=CORPORA, help="default: all")
    parser.add_argument("--cost-against", type=Path, help="another checkout's service dir")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--time-replay", choices=CORPORA, help=argparse.SUPPRESS)
    parser.add_argument(
        "--mixes",
        choices=("all", *HALVES),
        help="list the events of this part that mix stories, with the years each states",
    )
    args = parser.parse_args()
    if args.mixes:
        for corpus in args.corpus or CORPORA:
            print_mixes(corpus, args.mixes)
        return
    if args.time_replay:
        print(time_replay(args.time_replay))
        return
    if args.cost_against:
        compare_cost(args.cost_against, args.corpus or CORPORA, args.rounds)
        return
    for corpus in args.corpus or CORPORA:
        rows = load(corpus)
        stories = {
            h: {r["event"] for r in rows if half_of(corpus, r["event"]) == h} for h in HALVES
        }
        figures = measure(corpus)
        gap = figures["tuning"][2] - figures["checking"][2]
        if args.json:
            print(json.dumps({"corpus": corpus, "gap": round(gap, 4), **figures}))
            continue
        for part in ("all", *HALVES):
            p, r, f = figures[part]
            extra = f"  {len(stories[part])} stories" if part in stories else ""
            print(f"{corpus:<26} {part:<9} P {p:.3f}  R {r:.3f}  F1 {f:.3f}{extra}")
        flag = "  OVER-FITTING (> 0.03)" if abs(gap) > 0.03 else ""
        print(f"{corpus:<26} gap (tuning - checking) {gap:+.3f}{flag}")


if __name__ == "__main__":
    main()
