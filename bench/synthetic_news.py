"""A synthetic but realistic stream of full-text news for benchmarks.

Sentences come from the real ECB+ corpus (../shared/data/grouping/ecbplus-dev.jsonl); each
synthetic event draws its articles from a seed set of sentences plus names of its own, so the
stream has the shape of real news: many events, several reports each, ~600 words a report,
publication times spread over days.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared_data import shared_corpus

SENTENCE = re.compile(r"(?<=[.!?])\s+")
SYLLABLES = "ka lo mi ren tas vo gri dan el sor pa ni qu ber lin ot za hu".split()


def _sentences() -> list[str]:
    out: list[str] = []
    with shared_corpus("grouping/ecbplus-dev.jsonl").open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            for s in SENTENCE.split(record.get("text") or ""):
                if 6 <= len(s.split()) <= 40:
                    out.append(s.strip())
    return out


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def stream(
    count: int, *, seed: int = 7, per_hour: int = 300, words: int = 600
) -> Iterator[dict[str, object]]:
    """`count` articles in publication order, as JSONL records of the grouping corpora."""
    rng = random.Random(seed)
    pool = _sentences()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    sources = [f"outlet-{i}" for i in range(400)]
    events: list[tuple[list[str], list[str], int]] = []  # seeds, names, reports left
    for n in range(count):
        if not events or rng.random() < 0.12:
            names = [_name(rng) for _ in range(3)]
            events.append((rng.sample(pool, 40), names, rng.randint(2, 25)))
        index = rng.randrange(max(0, len(events) - 50), len(events))
        seeds, names, left = events[index]
        events[index] = (seeds, names, left - 1)
        if left <= 1:
            events.pop(index)
        body: list[str] = []
        total = 0
        while total < words:
            s = rng.choice(seeds) if rng.random() < 0.6 else rng.choice(pool)
            if rng.random() < 0.3:
                s = f"{rng.choice(names)} {rng.choice(names)} said {s[0].lower()}{s[1:]}"
            body.append(s)
            total += len(s.split())
        title = f"{names[0]} {rng.choice(seeds)[:80]}"
        when = start + timedelta(hours=n / per_hour)
        yield {
            "id": f"s{n}",
            "url": f"https://{rng.choice(sources)}.example/{n}",
            "source": rng.choice(sources),
            "title": title,
            "text": " ".join(body),
            "published": when.isoformat().replace("+00:00", "Z"),
        }


def write(path: Path, count: int, **kw: object) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for record in stream(count, **kw):  # type: ignore[arg-type]
            f.write(json.dumps(record) + "\n")
    return path
