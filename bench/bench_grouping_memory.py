"""Memory of the clusterer's state by part: the deep size of each part after a stream.

    python bench/bench_grouping_memory.py [--count 20000] [--per-hour 100]

Every object reached from a part is counted once (`sys.getsizeof`; a numpy array with its
buffer), parts in the order printed, so an object two parts share counts in the first.
Printed: each part in MiB and in bytes per article of the window. With the defaults the
72-hour window holds a steady 7,200 articles (docs/decisions/0092-compact-grouping-state.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_grouping import articles
from newswatch.grouping.cluster import Clusterer

PARTS = ("lsh", "events", "postings", "entity_names", "article_event", "lsh_times", "vocab")


def deep_size(obj: object, seen: set[int]) -> int:
    """Bytes of `obj` and of everything it refers to that is not in `seen` yet."""
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, np.ndarray):
        return size if obj.base is None else size + deep_size(obj.base, seen)
    if isinstance(obj, dict):
        return size + sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    if isinstance(obj, list | tuple | set | frozenset) or type(obj).__name__ == "deque":
        return size + sum(deep_size(x, seen) for x in obj)
    slots = getattr(type(obj), "__slots__", None)
    if slots:
        return size + sum(deep_size(getattr(obj, s), seen) for s in slots if hasattr(obj, s))
    if hasattr(obj, "__dict__"):
        return size + deep_size(vars(obj), seen)
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--per-hour", type=int, default=100)
    args = parser.parse_args()
    clusterer = Clusterer()
    for n, (title, body, when) in enumerate(articles(args.count, args.per_hour)):
        clusterer.add(n, title, body, when)
    window = len(clusterer.article_event)
    members = sum(len(e.members or ()) for e in clusterer.events.values())
    print(f"{window} articles in the window, {len(clusterer.events)} events, {members} members")
    seen: set[int] = set()
    total = 0
    for part in PARTS:
        size = deep_size(getattr(clusterer, part), seen)
        total += size
        print(f"  {part:15s} {size / 2**20:8.1f} MiB {size / window:8.0f} B/article")
    print(f"  {'total':15s} {total / 2**20:8.1f} MiB {total / window:8.0f} B/article")


if __name__ == "__main__":
    main()
