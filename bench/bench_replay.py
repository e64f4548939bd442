"""End-to-end grouping throughput: replay full-text articles into SQLite.

    python bench/bench_replay.py [--count 100000] [--baseline 20000]

Replays a synthetic stream of ~600-word articles (bench/synthetic_news.py) through the whole
pipeline (store, near-duplicates, events, event rows) into a fresh SQLite file, on one core.
Prints articles/s overall, the cost per article around 10,000 and around 100,000 stored
(target: within 1.3x), peak memory, and in the same run the baseline of datasketch
MinHashLSH alone (MinHash(128) with update_batch, 3-word shingles, insert + query) over the same
texts. Target: >= 1,000 articles/s end to end.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from newswatch.config import FileConfig, Settings

try:
    from newswatch.log import configure_logging
except ImportError:  # a build before the module's rename (bench_builds.py runs older ones)
    from newswatch.logging import configure_logging  # type: ignore[no-redef]
from newswatch.pipeline import Pipeline
from newswatch.replay import BATCH_LINES, replay
from newswatch.store.db import open_store
from synthetic_news import write


def datasketch_baseline(path: Path, limit: int) -> float:
    """Seconds per article of MinHashLSH alone (insert + query) over the first `limit`."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=0.5, num_perm=128)
    template = MinHash(num_perm=128)
    texts = []
    with path.open(encoding="utf-8") as f:
        for _, line in zip(range(limit), f, strict=False):
            record = json.loads(line)
            texts.append((record["id"], f"{record['title']} {record['text']}".lower().split()))
    started = time.perf_counter()
    for key, words in texts:
        shingles = {" ".join(words[i : i + 3]).encode() for i in range(len(words) - 2)}
        m = MinHash(num_perm=128, permutations=template.permutations, scheme=template.scheme)
        m.update_batch(shingles)
        lsh.query(m)
        lsh.insert(key, m)
    return (time.perf_counter() - started) / len(texts)


def run_replay(
    path: Path, count: int, marks: list[int], span: int
) -> tuple[float, dict[int, tuple[float, float]]]:
    """Total seconds; and after each mark, seconds per article over the `span` lines (mean)
    and over the median of its batches."""
    configure_logging("WARNING", "json")
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_store(f"sqlite:///{tmp}/bench.db")
        pipeline = Pipeline(engine, FileConfig(), Settings(_env_file=None))  # type: ignore[call-arg]
        times: dict[int, float] = {}
        seen = 0

        def tick() -> None:
            nonlocal seen
            seen += 1
            times[seen] = time.perf_counter()

        started = time.perf_counter()
        replay(engine, pipeline, path, on_line=tick)
        total = time.perf_counter() - started
        engine.dispose()
    per: dict[int, tuple[float, float]] = {}
    for mark in marks:
        if mark + span in times and mark in times:
            mean = (times[mark + span] - times[mark]) / span
            # Each replay transaction is BATCH_LINES lines: the window's batches one by one.
            steps = range(mark, mark + span, BATCH_LINES)
            costs = [(times[i + BATCH_LINES] - times[i]) / BATCH_LINES for i in steps]
            per[mark] = (mean, statistics.median(costs))
    return total, per


def replay_only(path: Path, span: int) -> None:
    """One replay of an existing stream file, its figures as JSON on stdout: the worker that
    bench_builds.py runs under each build."""
    count = sum(1 for _ in path.open(encoding="utf-8"))
    marks = [m for m in (10_000, count - span) if m + span <= count]
    cpu = time.process_time()
    total, per = run_replay(path, count, marks, span)
    # CPU time of the replay (all threads; the store opened and closed included): on a
    # shared machine a neighbour's burst moves the wall clock, not this.
    cpu = time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"count": count, "total": total, "cpu": cpu, "per": per, "peak_mib": peak}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stream", type=Path, help="replay this stream file only (JSON output)")
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--baseline", type=int, default=20_000)
    ap.add_argument("--span", type=int, default=5_000, help="articles each cost is averaged over")
    # 100 an hour: the 72-hour window holds a steady 7,200 articles after the first 7,200.
    ap.add_argument("--per-hour", type=int, default=100)
    args = ap.parse_args()
    if args.stream:
        replay_only(args.stream, args.span)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "stream.jsonl", args.count, per_hour=args.per_hour)
        words = 0
        with path.open(encoding="utf-8") as f:
            for _, line in zip(range(1000), f, strict=False):
                words += len(json.loads(line)["text"].split())
        print(f"stream: {args.count} articles, ~{words // 1000} words each")
        # Each cost is the mean over `span` articles, and the median of its batches: a single
        # 2,000 caught a checkpoint or a neighbour's burst on this shared machine and swung by
        # 30 %; a burst moves a mean, while a median of batches ignores the odd one out.
        span = args.span
        marks = [m for m in (10_000, args.count - span) if m + span <= args.count]
        total, per = run_replay(path, args.count, marks, span)
        # The replay's own high-water mark, before the baseline keeps its texts in memory.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        base = datasketch_baseline(path, min(args.baseline, args.count))
        print(f"datasketch MinHashLSH alone: {base * 1e3:.3f} ms/article, {1 / base:.0f}/s")
    rate = args.count / total
    print(f"replay end to end: {total:.1f} s, {rate:.0f} articles/s (target >= 1000)")
    print(f"end to end costs {1 / (base * rate):.2f}x datasketch MinHashLSH alone per article")
    for mark, (mean, median) in per.items():
        print(
            f"  cost per article over {mark}..{mark + span} stored: {mean * 1e3:.3f} ms "
            f"(median of its {span // BATCH_LINES} batches {median * 1e3:.3f} ms)"
        )
    if len(per) == 2:
        (low, low_median), (high, high_median) = per[marks[0]], per[marks[1]]
        print(
            f"  ratio at {marks[1]} vs {marks[0]}: {high / low:.2f}, of the batch medians "
            f"{high_median / low_median:.2f} (target <= 1.3)"
        )
    print(f"peak RSS of the replay: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
