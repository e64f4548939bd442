"""What stemming an article costs: PyStemmer (Snowball compiled to C) against snowballstemmer
(the same Snowball algorithms generated as pure Python), per article of `--words` words.

    python bench/bench_stemmer.py [--words 600] [--articles 300] [--rounds 7]

Articles are the real ECB+ texts (../shared/data/grouping/ecbplus-dev.jsonl, English),
folded into words by alerts.query.words (as the search index does) and cut or joined into
`--words`-word articles. Each round stems every article with each library, interleaved, in a
fresh stemmer (so each round pays for its own cache). The time is that of stemming alone (the
words are split beforehand), divided by the number of articles: microseconds per article,
min / median / max over the rounds. Both libraries must give the same stems (checked).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from newswatch.alerts.query import words
from shared_data import shared_corpus


def articles(n_words: int, count: int) -> list[list[str]]:
    path = shared_corpus("grouping/ecbplus-dev.jsonl")
    stream: list[str] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            stream += words(f"{row['title']} {row['text']}")
    out = []
    for i in range(count):
        start = (i * n_words) % max(1, len(stream) - n_words)
        out.append(stream[start : start + n_words])
    return out


def stem_all(make: Callable[[], Callable[[list[str]], list[str]]], docs: list[list[str]]) -> float:
    stem = make()
    started = time.perf_counter()
    for doc in docs:
        stem(doc)
    return (time.perf_counter() - started) / len(docs) * 1e6


def pystemmer() -> Callable[[list[str]], list[str]]:
    import Stemmer

    return Stemmer.Stemmer("english").stemWords  # type: ignore[no-any-return]


def snowball() -> Callable[[list[str]], list[str]]:
    # snowballstemmer.stemmer() is PyStemmer's class when PyStemmer is installed: the pure
    # Python stemmer is taken by its module.
    from snowballstemmer.english_stemmer import EnglishStemmer

    return EnglishStemmer().stemWords  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=600)
    parser.add_argument("--articles", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    docs = articles(args.words, args.articles)
    if [pystemmer()(d) for d in docs] != [snowball()(d) for d in docs]:
        raise SystemExit("the two libraries disagree on a stem")
    times: dict[str, list[float]] = {"pystemmer": [], "snowballstemmer": []}
    for _ in range(args.rounds):
        times["pystemmer"].append(stem_all(pystemmer, docs))
        times["snowballstemmer"].append(stem_all(snowball, docs))
    print(f"{len(docs)} articles of {args.words} words, {args.rounds} rounds; us per article")
    for name, values in times.items():
        print(
            f"  {name:16} min {min(values):9.1f}  median {statistics.median(values):9.1f}"
            f"  max {max(values):9.1f}"
        )
    ratio = statistics.median(times["snowballstemmer"]) / statistics.median(times["pystemmer"])
    print(f"  snowballstemmer / pystemmer (medians): {ratio:.1f}x")


if __name__ == "__main__":
    main()
