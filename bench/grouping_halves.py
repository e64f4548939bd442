"""B³ precision, recall and F1 of grouping on each dev corpus, whole and in two halves by
story: a tuning half (the only one a change may be tuned on) and a checking half (read, never
tuned on). A gap above 0.03 between the halves is over-fitting to remove (issue 18,
docs/decisions/0174-tuning-and-checking-halves.md).

    python bench/grouping_halves.py            # both corpora, default settings
    python bench/grouping_halves.py --json     # one JSON object a line

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
import sys
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    parser.add_argument("--corpus", action="append", choices=CORPORA, help="default: all")
    args = parser.parse_args()
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
