"""1,000 alert rules against one article: the all-rules matcher against each rule's own query.

    python bench/bench_rules.py [--rules 1000] [--articles 300] [--pipeline 5000]

Rules are drawn from the words of the real ECB+ corpus (the same sentences the synthetic news
stream is made of), in the shapes users write: alternatives of terms and "phrases" ANDed
together, trailing wildcards, `title:` fields, `NOT` exclusions. Articles are ~600-word
reports of the synthetic stream (bench/synthetic_news.py). For each article, in the same run:
- baseline: evaluate every rule's compiled query on the article;
- matcher: RuleSet.match (Aho-Corasick prefilter over the rules' trigger words, then only the
  candidate rules are evaluated).
Both get the same prepared Document; preparing it (folding, tokenising) is timed apart.
Targets: matcher < 1 ms per article, >= 20x faster than the baseline; results identical.
With --pipeline N: N articles replayed through the whole pipeline into SQLite, without rules
and with the same rules (min_sources 2 within 24h): what the alerts stage adds per article,
against the matcher alone (Document.of + RuleSet.match) on the same articles, the modes
interleaved --repeats times (min/median/max), in wall-clock and in the process's CPU time
(the latter steady on a shared machine). The matcher alone is also timed beside each call of
the stage: on that batch's new articles, just before and just after it (the mean of the two),
so that both are measured in the same moment of the machine's load (decision 0234); the two
must match the same articles. Target: the stage <= 2x the matcher alone.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import text

import newswatch.replay as replay_module
from newswatch.alerts.articles import load_articles
from newswatch.alerts.config import ChannelConfig, RuleConfig
from newswatch.alerts.matcher import CompiledRule, RuleSet
from newswatch.alerts.query import Document, evaluate, parse, words
from newswatch.config import FileConfig, Settings
from newswatch.log import configure_logging
from newswatch.pipeline import Pipeline
from newswatch.replay import replay
from newswatch.store.db import open_store
from synthetic_news import _sentences, stream, write


def vocabulary(min_len: int = 4) -> list[str]:
    """What rules are written about: the corpus's names (capitalised words: people, places,
    organisations) and topic words, each seen at least 3 times; the 150 commonest words, too
    general for a rule, are left out."""
    counts = Counter(w for s in _sentences() for w in words(s) if len(w) >= min_len)
    ranked = [w for w, n in counts.most_common() if w.isalpha() and n >= 3]
    return ranked[150:]


def random_rule(rng: random.Random, vocab: list[str]) -> str:
    def term() -> str:
        word = rng.choice(vocab)
        roll = rng.random()
        if roll < 0.15:
            return f'"{word} {rng.choice(vocab)}"'
        if roll < 0.3 and len(word) > 5:
            return word[: len(word) - 2] + "*"
        if roll < 0.4:
            return f"title:{word}"
        return word

    groups = []
    for _ in range(rng.choice((1, 2, 2, 3))):  # most rules combine two concepts
        alternatives = [term() for _ in range(rng.randint(1, 4))]
        group = " OR ".join(alternatives)
        groups.append(f"({group})" if len(alternatives) > 1 else group)
    query = " AND ".join(groups)
    if rng.random() < 0.3:
        query += f" NOT {term()}"
    return query


def timed(fn, reps: int) -> float:  # type: ignore[no-untyped-def]
    """Best-of-3 mean seconds per call."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - start) / reps)
    return best


@dataclass
class Replayed:
    seconds: float  # the whole replay
    stage: float  # of which in the alerts stage (AlertStage.on_changes)
    stage_cpu: float  # the process's CPU time in the stage
    queued: int  # notifications queued
    matched: int  # articles that matched some rule (their article_matches rows)
    # CPU time of the matcher alone on each batch's new articles, run just before and just
    # after the stage on them (the mean of the two): the baseline in the same moment.
    beside_cpu: float = 0.0


def match_cpu(
    ruleset: RuleSet, docs: list[tuple[str | None, str | None, str, str | None]]
) -> float:
    """CPU seconds of the matcher alone (Document.of + RuleSet.match) on these articles
    (title, text, carriers' names, language: what the stage's documents are made of)."""
    cpu = time.process_time()
    for title, body, source, lang in docs:
        ruleset.match(Document.of(title=title, text=body, source=source, lang=lang))
    return time.process_time() - cpu


def replay_seconds(
    path: Path, rules: list[RuleConfig], batch: int = 0, ruleset: RuleSet | None = None
) -> Replayed:
    """Replay `path` into a fresh SQLite store with these rules (none: alerts off); with
    `ruleset` (the same rules), time the matcher alone beside each call of the stage."""
    configure_logging("WARNING", "json")
    channels = [ChannelConfig(name="ops", type="webhook", url="http://127.0.0.1:9/hook")]
    config = FileConfig(channels=channels, rules=rules)
    in_stage = [0.0, 0.0, 0.0]  # wall-clock, CPU, the matcher alone beside it (CPU)
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_store(f"sqlite:///{tmp}/bench.db")
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        pipeline = Pipeline(engine, config, settings, alerts=bool(rules))
        if pipeline.alert_engine is not None:
            on_changes = pipeline.alert_engine.on_changes

            def timed_stage(session, changes):  # type: ignore[no-untyped-def]
                docs = []
                if ruleset is not None:  # the batch's new articles, as the stage reads them
                    new = [c.article_id for c in changes if not c.sighting]
                    docs = [
                        (v.title, v.text, " ".join(n for _, n in v.sources), v.language)
                        for v in load_articles(session, new)
                    ]
                    before = match_cpu(ruleset, docs)
                started, cpu = time.perf_counter(), time.process_time()
                try:
                    return on_changes(session, changes)
                finally:
                    in_stage[0] += time.perf_counter() - started
                    in_stage[1] += time.process_time() - cpu
                    if ruleset is not None:
                        in_stage[2] += (before + match_cpu(ruleset, docs)) / 2

            pipeline.alert_engine.on_changes = timed_stage  # type: ignore[method-assign]
        if batch:  # articles a transaction (the replay's default otherwise)
            replay_module.BATCH_LINES = batch
        started = time.perf_counter()
        replay(engine, pipeline, path)
        seconds = time.perf_counter() - started
        with engine.connect() as conn:
            queued = conn.execute(text("SELECT COUNT(*) FROM notifications")).scalar_one()
            matched = conn.execute(text("SELECT COUNT(*) FROM article_matches")).scalar_one()
        engine.dispose()
    return Replayed(seconds, in_stage[0], in_stage[1], int(queued), int(matched), in_stage[2])


def matcher_seconds(path: Path, ruleset: RuleSet) -> tuple[float, float, int]:
    """Seconds (wall-clock, CPU) for the matcher alone over the articles of `path`: prepare
    each article's document (fold, tokenise) and match it against every rule, as the stage
    must at least; and the number of articles that matched some rule."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    matched = 0
    started, cpu = time.perf_counter(), time.process_time()
    for r in records:
        doc = Document.of(title=r["title"], text=r["text"], source=r["source"], lang="en")
        matched += bool(ruleset.match(doc))
    return time.perf_counter() - started, time.process_time() - cpu, matched


def pipeline_cost(queries: list[str], count: int, repeats: int, batch: int) -> None:
    """The alerts stage inside the ingest pipeline against the matcher alone, per article:
    the replay with the rules minus the replay without, beside Document.of + RuleSet.match
    over the same articles; the three modes interleaved `repeats` times."""
    rules = [
        RuleConfig(name=f"r{i}", query=q, channels=["ops"], min_sources=2, window="24h")
        for i, q in enumerate(queries)
    ]
    ruleset = RuleSet(CompiledRule(r.name, r.compiled()) for r in rules)
    stage_ms, added_ms, matcher_ms, ratios, cpu_ratios, beside = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "stream.jsonl", count, seed=5)
        for _ in range(repeats):
            bare = replay_seconds(path, [], batch)
            alerting = replay_seconds(path, rules, batch, ruleset)
            matcher, matcher_cpu, found = matcher_seconds(path, ruleset)
            # The baseline matched the same articles as the stage (same rules, same texts).
            assert found == alerting.matched, (found, alerting.matched)
            stage_ms.append(alerting.stage / count * 1000)
            added_ms.append((alerting.seconds - bare.seconds) / count * 1000)
            matcher_ms.append(matcher / count * 1000)
            ratios.append(stage_ms[-1] / matcher_ms[-1])
            cpu_ratios.append(alerting.stage_cpu / matcher_cpu)
            beside.append(alerting.stage_cpu / alerting.beside_cpu)

    def mmm(values: list[float], unit: str = "") -> str:
        low, mid, high = min(values), statistics.median(values), max(values)
        return f"{low:.2f}/{mid:.2f}/{high:.2f}{unit}"

    size = batch or replay_module.BATCH_LINES
    print(f"pipeline, {count} articles replayed into SQLite ({size} a transaction), "
          f"{len(rules)} rules (min_sources 2 within 24h), {repeats} interleaved runs, "
          "min/median/max:")  # fmt: skip
    print(f"  alerts stage (time in AlertStage.on_changes): {mmm(stage_ms, ' ms an article')}")
    print(f"  replay with rules - replay without:          {mmm(added_ms, ' ms an article')}")
    print(f"  matcher alone (Document.of + RuleSet.match):  {mmm(matcher_ms, ' ms an article')}"
          f" ({found} of {count} articles match some rule in both)")  # fmt: skip
    met = "yes" if max(ratios) <= 2 else "NO"
    print(f"  stage / matcher (per run): {mmm(ratios, 'x')}; target <= 2x: {met}; "
          f"{alerting.queued} notifications queued a run")  # fmt: skip
    # On a shared machine the wall-clock ratio also measures what the others ran meanwhile;
    # the process's CPU time in each part does not.
    met = "yes" if max(cpu_ratios) <= 2 else "NO"
    print(f"  stage / matcher in CPU time (per run): {mmm(cpu_ratios, 'x')}; target <= 2x: {met}")
    # The same in CPU time, the matcher alone run on each batch's articles just before and
    # just after the stage on them: both in the same moment of a shared machine's load.
    met = "yes" if max(beside) <= 2 else "NO"
    print(f"  stage / matcher beside it, CPU time (per run): {mmm(beside, 'x')}; "
          f"target <= 2x: {met}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--articles", type=int, default=300)
    parser.add_argument(
        "--pipeline", type=int, default=0, help="also replay this many articles with the rules"
    )
    parser.add_argument("--repeats", type=int, default=5, help="interleaved pipeline runs")
    parser.add_argument(
        "--batch", type=int, default=0, help="articles a transaction (default: the replay's)"
    )
    args = parser.parse_args()

    rng = random.Random(11)
    vocab = vocabulary()
    queries = [random_rule(rng, vocab) for _ in range(args.rules)]
    start = time.perf_counter()
    rules = [CompiledRule(f"r{i}", parse(q)) for i, q in enumerate(queries)]
    ruleset = RuleSet(rules)
    compile_ms = (time.perf_counter() - start) * 1000
    articles = list(stream(args.articles, seed=3))

    prepare, matcher, baseline, hits, candidates = [], [], [], [], []
    for record in articles:
        title, text = str(record["title"]), str(record["text"])
        doc = Document.of(title=title, text=text, source=str(record["source"]), lang="en")
        expected = [r.name for r in rules if evaluate(r.query, doc)]
        assert [r.name for r in ruleset.match(doc)] == expected, "matcher disagrees"
        hits.append(len(expected))
        candidates.append(len(ruleset.candidates(doc)))
        reps = 20
        prepare.append(
            timed(lambda t=title, x=text: Document.of(title=t, text=x, source="s", lang="en"), 5)
        )
        matcher.append(timed(lambda d=doc: ruleset.match(d), reps))
        baseline.append(timed(lambda d=doc: [r for r in rules if evaluate(r.query, d)], 2))

    def ms(values: list[float], q: float | None = None) -> str:
        if q is None:
            return f"{statistics.median(values) * 1000:.3f}"
        return f"{statistics.quantiles(values, n=100)[int(q) - 1] * 1000:.3f}"

    ratio = statistics.median(b / m for b, m in zip(baseline, matcher, strict=True))
    print(f"rules: {len(rules)} (compiled with the matcher in {compile_ms:.0f} ms), ")
    print(f"  {len(ruleset.always)} evaluated on every article (no word they need)")
    print(f"articles: {len(articles)}, ~600 words; matching rules per article: "
          f"median {statistics.median(hits):.0f}, max {max(hits)}; candidates after the "
          f"prefilter: median {statistics.median(candidates):.0f}")  # fmt: skip
    print(f"prepare document (fold, tokenise): median {ms(prepare)} ms, p99 {ms(prepare, 99)} ms")
    print(f"matcher (1,000 rules):             median {ms(matcher)} ms, p99 {ms(matcher, 99)} ms")
    print(f"baseline (each query separately):  median {ms(baseline)} ms, p99 {ms(baseline, 99)} ms")
    print(f"speed-up (median of per-article ratios): {ratio:.0f}x")
    under = statistics.quantiles(matcher, n=100)[98] < 0.001
    print(f"targets: matcher p99 < 1 ms: {'yes' if under else 'NO'}; "
          f">= 20x: {'yes' if ratio >= 20 else 'NO'}")  # fmt: skip
    if args.pipeline:
        pipeline_cost(queries, args.pipeline, args.repeats, args.batch)


if __name__ == "__main__":
    main()
