"""CPU per call of `alerts.query.words` (the tokenizer of rule documents and the full-text
index) on real text: the grouping corpora's titles and bodies and the extraction benchmark's
gold bodies, against the floor of any \\w tokenizer in Python (`re.findall(r"\\w+", text)`:
no case or accent folding) and, with `--against REV`, the `words` of an earlier commit.
Rounds interleave the functions; process CPU time.

    .venv/bin/python bench/bench_words.py [--rounds 5] [--against b3a1d7b]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from newswatch.alerts.query import words
from shared_data import shared_corpus

_BARE = re.compile(r"\w+")


def texts() -> list[str]:
    out: list[str] = []
    for name in ("ecbplus-dev.jsonl", "uci-headlines-dev.jsonl"):
        for line in shared_corpus(f"grouping/{name}").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            out += [t for t in (row.get("title"), row.get("text")) if t]
    truth = "extraction/article-extraction-benchmark/ground-truth.json"
    gold = json.loads(shared_corpus(truth).read_text(encoding="utf-8"))
    return out + [gold[k]["articleBody"] for k in sorted(gold)]


def words_at(rev: str) -> Callable[[str], list[str]]:
    """`words` as commit `rev` defined it, loaded from `git show` beside the current one."""
    source = subprocess.run(
        ["git", "show", f"{rev}:service/newswatch/alerts/query.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "query_then.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("query_then", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["query_then"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.words  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", help="a commit whose words() runs beside this one")
    args = parser.parse_args()
    corpus = texts()
    groups = {
        "all": corpus,
        "ascii": [t for t in corpus if t.isascii()],
        "non-ascii": [t for t in corpus if not t.isascii()],
    }
    funcs: dict[str, Callable[[str], object]] = {"words": words, "bare \\w+": _BARE.findall}
    if args.against:
        funcs[args.against] = then = words_at(args.against)
        unequal = sum(words(t) != then(t) for t in corpus)
        print(f"outputs compared with {args.against}: {len(corpus)}, unequal: {unequal}")
    for text in corpus:  # warm the per-word caches
        for f in funcs.values():
            f(text)
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load", os.getloadavg())
    cpu: dict[tuple[str, str], list[float]] = {(g, f): [] for g in groups for f in funcs}
    for r in range(args.rounds):
        order = list(funcs.items())
        for group, items in groups.items():
            for name, f in order if r % 2 == 0 else order[::-1]:
                start = time.process_time()
                for text in items:
                    f(text)
                cpu[group, name].append((time.process_time() - start) / len(items) * 1e6)
    for group, items in groups.items():
        size = sum(map(len, items)) // len(items)
        print(f"{group}: {len(items)} texts, {size} characters on average; CPU µs a call")
        for name in funcs:
            v = cpu[group, name]
            print(f"  {name:12s} {min(v):7.2f} / {statistics.median(v):7.2f} / {max(v):7.2f}")
    print("load", os.getloadavg())


if __name__ == "__main__":
    main()
