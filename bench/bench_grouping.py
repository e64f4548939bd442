"""Cost of grouping per ~600-word article, with 10,000 vs 100,000 articles already added,
peak memory, and a baseline measured in the same run: datasketch MinHashLSH alone on the
input grouping hashes (title and first 1,500 characters, word 3-shingles, MinHash(64) with
permutations made once, `update_batch`, query then insert). Grouping is timed as the
pipeline runs it: `Clusterer.add_many` over batches of `--batch` articles (100; the replay's
are 1,000, a poll's its new entries), each article costing its batch's mean; `--batch 1`
times `add()` one article at a time. The last sample is timed in ROUNDS blocks, each
followed by the baseline on the same block's texts (interleaved); each block's ratio is of
the median costs an article (of single calls, or of batch means on both sides: a
neighbour's burst on a shared machine moves a block's mean several times over, its median
hardly).

    python bench/bench_grouping.py                 # 100,000 articles (a few minutes)
    python bench/bench_grouping.py --count 30000   # quicker look
    python bench/bench_grouping.py --batch 1       # add() one article at a time

Texts come from bench/synthetic_news.py (sentences of the real ECB+ corpus recombined into
events of several reports), spread over time so that the 72-hour window holds a steady
number of articles (`--per-hour`): the state the clusterer carries stops growing after the
first window, and so must its cost per article.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from newswatch.grouping import text
from newswatch.grouping.cluster import Clusterer
from newswatch.grouping.settings import GroupingSettings
from synthetic_news import stream

WARMUP = 1000
ROUNDS = 5
# What both sides are timed with: wall clock, or with --cpu this process's CPU time (on a
# machine shared at a high load, a neighbour's burst moves the wall clock, not CPU time).
CLOCK = [time.perf_counter]


def articles(count: int, per_hour: int) -> Iterator[tuple[str, str, float]]:
    for record in stream(count, per_hour=per_hour):
        when = datetime.fromisoformat(str(record["published"]).replace("Z", "+00:00"))
        yield str(record["title"]), str(record["text"]), when.timestamp()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_clusterer(
    count: int, per_hour: int, marks: list[int], sample: int, batch: int, progress: int = 0
) -> dict:
    """Per-article times of add_many() over batches of `batch` articles (each article gets
    its batch's mean; `batch` 1 is add() one article at a time) for `sample` articles after
    each mark; with `progress`, a line every that many articles (median cost over them,
    peak RSS, articles in the window), so that a long run on a busy machine leaves figures
    even if stopped."""
    clusterer = Clusterer(GroupingSettings())
    times: dict[int, list[float]] = {m: [] for m in marks}
    texts: dict[int, list[tuple[str, str]]] = {m: [] for m in marks}
    sizes: dict[int, str] = {}
    rss0 = rss_mb()
    clock = CLOCK[0]
    baseline = Datasketch()
    defaults = Datasketch(defaults=True)
    # Each block's median cost an article (of its batches), baseline and baseline-with-defaults.
    rounds: list[tuple[float, float, float]] = []
    block = sample // ROUNDS
    recent: list[float] = []
    stream = list(articles(count, per_hour))
    for first in range(0, count, batch):
        if first <= WARMUP < first + batch:
            gc.collect()
            gc.freeze()  # the long-lived state need not be traversed by every collection
        chunk = [(n, *stream[n]) for n in range(first, min(first + batch, count))]
        t0 = clock()
        clusterer.add_many(chunk)
        elapsed = (clock() - t0) / len(chunk)
        for n, title, body, _ in chunk:
            record(n, title, body, elapsed, marks, sample, times, texts)
            if progress:
                recent.append(elapsed)
                if (n + 1) % progress == 0:
                    report(n, clusterer, recent)
            for m in marks:
                if n == m + sample - 1:
                    sizes[m] = state(clusterer, rss_mb() - rss0)
            last = marks[-1]
            if last <= n < last + block * ROUNDS and (n - last + 1) % block == 0:
                base = batch_median(baseline.time(texts[last][-block:]), batch)
                default = batch_median(defaults.time(texts[last][-block:]), batch)
                rounds.append((statistics.median(times[last][-block:]), base, default))
    return {"times": times, "texts": texts, "sizes": sizes, "rounds": rounds}


def record(
    n: int,
    title: str,
    body: str,
    elapsed: float,
    marks: list[int],
    sample: int,
    times: dict[int, list[float]],
    texts: dict[int, list[tuple[str, str]]],
) -> None:
    for m in marks:
        if m <= n < m + sample:
            times[m].append(elapsed)
            texts[m].append((title, body))


def report(n: int, clusterer: Clusterer, recent: list[float]) -> None:
    window = len(clusterer.article_event)
    median = statistics.median(recent) * 1e3
    print(
        f"{n + 1:>7} added: median {median:.3f} ms an article over the last {len(recent)}, "
        f"peak RSS {rss_mb():.0f} MB, {window} articles in the window",
        flush=True,
    )
    recent.clear()


def batch_median(times: list[float], batch: int) -> float:
    """The median over batches of `batch` articles of their mean time (as add_many's)."""
    means = [statistics.fmean(times[i : i + batch]) for i in range(0, len(times), batch)]
    return statistics.median(means)


def state(clusterer: Clusterer, rss_growth: float) -> str:
    return (
        f"peak RSS +{rss_growth:.0f} MB, {len(clusterer.events)} events, "
        f"{len(clusterer.lsh)} signatures, {len(clusterer.postings)} posting lists, "
        f"{len(clusterer.vocab)} terms in the vocabulary; capped caches: "
        f"{len(text._TERMS)} terms, "
        f"{len(text._NAME_KEYS)} name keys"
    )


class Datasketch:
    """The baseline: near-duplicate detection alone, with the common library, on what
    grouping hashes (title and the body's first SHINGLE_CHARS characters): 64 permutations
    made once; or (`defaults`) the library's defaults, MinHash() and MinHashLSH(), which
    make 128 permutations for every document."""

    def __init__(self, defaults: bool = False) -> None:
        from datasketch import MinHash, MinHashLSH

        self.minhash = MinHash
        self.defaults = defaults
        self.lsh = MinHashLSH() if defaults else MinHashLSH(threshold=0.5, num_perm=64)
        self.template = MinHash(num_perm=64)  # permutations made once
        self.key = 0

    def time(self, texts: list[tuple[str, str]]) -> list[float]:
        """Seconds to query then insert each text."""
        out: list[float] = []
        clock = CLOCK[0]
        for title, body in texts:
            t0 = clock()
            tokens = f"{title} {body[: text.SHINGLE_CHARS]}".lower().split()
            shingles = [" ".join(tokens[i : i + 3]).encode() for i in range(len(tokens) - 2)]
            if self.defaults:
                mh = self.minhash()
            else:
                mh = self.minhash(
                    num_perm=64,
                    permutations=self.template.permutations,
                    scheme=self.template.scheme,
                )
            mh.update_batch(shingles)
            self.lsh.query(mh)
            self.key += 1
            self.lsh.insert(self.key, mh)
            out.append(clock() - t0)
        return out


def spread(values: list[float]) -> str:
    return f"min {min(values):.2f}, median {statistics.median(values):.2f}, max {max(values):.2f}"


def ms(values: list[float]) -> str:
    median, mean = statistics.median(values) * 1e3, statistics.fmean(values) * 1e3
    return f"median {median:.3f} ms, mean {mean:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--per-hour", type=int, default=100, help="articles per stream hour")
    parser.add_argument("--sample", type=int, default=2000, help="articles timed per mark")
    parser.add_argument("--progress", type=int, default=0, help="print a line every N articles")
    parser.add_argument(
        "--batch",
        type=int,
        default=100,
        help="articles a call of add_many() (as the pipeline's batches; 1: add() each)",
    )
    parser.add_argument("--cpu", action="store_true", help="time CPU, not the wall clock")
    args = parser.parse_args()
    if args.cpu:
        CLOCK[0] = time.process_time
    marks = [10_000, args.count - args.sample]
    if any(m % args.batch for m in marks) or (args.sample // ROUNDS) % args.batch:
        parser.error("--batch must divide the marks and sample / 5")
    result = run_clusterer(args.count, args.per_hour, marks, args.sample, args.batch, args.progress)
    early, late = (result["times"][m] for m in marks)
    ratios = [grouping / base for grouping, base, _ in result["rounds"]]
    default_ratios = [grouping / default for grouping, _, default in result["rounds"]]
    base_ms = [base * 1e3 for _, base, _ in result["rounds"]]
    default_ms = [default * 1e3 for _, _, default in result["rounds"]]
    add_ms = [grouping * 1e3 for grouping, _, _ in result["rounds"]]
    words = statistics.fmean(len(b.split()) for _, b in result["texts"][marks[1]])
    print(f"articles {args.count}, {args.per_hour}/h (window 72 h), mean {words:.0f} words")
    how = "add() one at a time" if args.batch == 1 else f"add_many() of {args.batch} articles"
    print(f"grouping timed as {how}; the baseline's times as means of as many articles")
    print("times are CPU time of this process" if args.cpu else "times are wall clock")
    print(f"grouping after {marks[0]:>7}: {ms(early)}")
    print(f"grouping after {marks[1]:>7}: {ms(late)}")
    print(f"ratio late/early (median): {statistics.median(late) / statistics.median(early):.2f}")
    print(f"interleaved, median ms/article of each of {ROUNDS} blocks:")
    print(f"  grouping:                                    {spread(add_ms)}")
    print(f"  datasketch MinHash(64 made once)+LSH(0.5,64): {spread(base_ms)}")
    print(f"  datasketch with its defaults (128, per doc):  {spread(default_ms)}")
    print(f"grouping / datasketch 64, block by block (target <= 1.0): {spread(ratios)}")
    print(f"grouping / datasketch defaults, block by block:          {spread(default_ratios)}")
    print(f"peak RSS of the process: {rss_mb():.0f} MB")
    for m in marks:
        print(f"after {m + args.sample:>7}: {result['sizes'][m]}")


if __name__ == "__main__":
    main()
