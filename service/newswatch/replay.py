"""Replaying articles from a JSONL file through the same pipeline as fetched articles.

One article a line: `id`, `url`, `source`, `title`, `text`, `published` (other fields, such as
a gold `event` label, are ignored by the replay and used only by `evaluate`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from newswatch.errors import InputError
from newswatch.fetch.entry_sink import AfterIngest
from newswatch.pipeline import Pipeline
from newswatch.shared_types import ParsedEntry
from newswatch.store.articles import ensure_sources
from newswatch.store.db import session_scope
from newswatch.store.event_lookup import events_of_articles

# Lines per transaction: large enough for group commit and to update each touched event's row
# once for several of its articles, small enough to keep memory flat. (1,000 rather than 500:
# 1.5 % fewer instructions an article; a divisor of the benchmark's 5,000-article spans.)
BATCH_LINES = 1000
UNKNOWN_SOURCE = "replay"


class LineError(InputError):
    """A line of the file that cannot be replayed; `line` counts from 1."""

    def __init__(self, path: str, line: int, message: str):
        super().__init__(message, where=f"{path}:{line}")
        self.path, self.line = path, line


@dataclass
class ReplayLine:
    line: int
    id: str
    source: str
    entry: ParsedEntry
    raw: dict[str, Any]


@dataclass
class ReplayResult:
    lines: int = 0
    ingested: int = 0
    new_articles: int = 0
    errors: list[LineError] = field(default_factory=list)
    # input id -> article id (copies of one article share it)
    article_of: dict[str, int] = field(default_factory=dict)
    # input id -> the event the article is in at the end of the replay
    event_of: dict[str, int | None] = field(default_factory=dict)
    stopped: bool = False  # `stop` said so before the end of the file


def _parse_time(value: object, where: str) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected an ISO 8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{where}: not an ISO 8601 time: {value!r}") from None
    try:
        # In UTC now: the store does it anyway, and 0001-01-01T00:00+01:00 has no UTC time
        # (an OverflowError there would fail the whole batch of lines).
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError(f"{where}: out of range in UTC: {value!r}") from None


def _text_field(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"field {name!r}: expected a string, got {type(value).__name__}")
    return value.strip() or None


def parse_line(path: str, number: int, text: str) -> ReplayLine:
    """One line of the file as an entry, or LineError naming the line and the problem."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LineError(path, number, f"col {exc.colno}: not JSON: {exc.msg}") from None
    except RecursionError:  # json's decoder recurses once per level of nesting
        raise LineError(path, number, "JSON nested too deeply to be an article") from None
    if not isinstance(record, dict):
        raise LineError(path, number, "not a JSON object")
    try:
        title = _text_field(record, "title")
        body = _text_field(record, "text")
        url = _text_field(record, "url")
        source = _text_field(record, "source") or UNKNOWN_SOURCE
        published = _parse_time(record.get("published"), "field 'published'")
    except ValueError as exc:
        raise LineError(path, number, str(exc)) from None
    if not title and not body:
        raise LineError(path, number, "no title and no text")
    raw_id = record.get("id")
    article_key = str(raw_id) if raw_id not in (None, "") else f"line-{number}"
    entry = ParsedEntry(
        url=url, guid=f"replay:{article_key}", title=title, text=body, published=published
    )
    return ReplayLine(number, article_key, source[:200], entry, record)


def read_lines(path: str | Path) -> Iterator[ReplayLine | LineError]:
    """Every non-blank line of the file, parsed or as its error, in file order."""
    name = str(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                yield parse_line(name, number, text)
            except LineError as exc:
                yield exc


def count_lines(path: str | Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def replay(
    engine: Engine,
    pipeline: Pipeline,
    path: str | Path,
    *,
    on_line: Callable[[], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> ReplayResult:
    """Ingest every good line of `path`, in file order; bad lines are collected, not fatal.
    When `stop()` turns true the lines read so far are ingested and the replay ends there
    (a replay of the same file later adds the rest: copies are stored once)."""
    result = ReplayResult()
    sources: dict[str, int] = {}  # source name -> id, across batches
    batch: list[ReplayLine] = []
    for item in read_lines(path):
        if stop is not None and stop():
            result.stopped = True
            break
        result.lines += 1
        if isinstance(item, LineError):
            result.errors.append(item)
        else:
            batch.append(item)
            if len(batch) >= BATCH_LINES:
                _ingest_batch(engine, pipeline, batch, result, str(path), sources)
                batch = []
        if on_line is not None:
            on_line()
    if batch:
        _ingest_batch(engine, pipeline, batch, result, str(path), sources)
    result.event_of = final_events(engine, result.article_of)
    return result


def _ingest_batch(
    engine: Engine,
    pipeline: Pipeline,
    batch: list[ReplayLine],
    result: ReplayResult,
    path: str,
    sources: dict[str, int],
) -> None:
    """One transaction; consecutive lines of one source go in together, in file order."""
    with session_scope(engine) as session:
        unknown = [item.source for item in batch if item.source not in sources]
        if unknown:
            for name, source in ensure_sources(session, unknown).items():
                assert source.id is not None
                sources[name] = source.id
        runs: list[tuple[int, list[ReplayLine]]] = []
        for item in batch:
            source_id = sources[item.source]
            if runs and runs[-1][0] == source_id:
                runs[-1][1].append(item)
            else:
                runs.append((source_id, [item]))
        jobs: list[tuple[int, list[ParsedEntry], AfterIngest | None]] = [
            (source_id, [i.entry for i in items], None) for source_id, items in runs
        ]
    outcomes = pipeline.ingest_many(jobs)
    for (_source_id, items), outcome in zip(runs, outcomes, strict=True):
        if isinstance(outcome, Exception):
            for item in items:
                result.errors.append(LineError(path, item.line, f"not stored: {outcome}"))
            continue
        result.ingested += len(items)
        result.new_articles += outcome.new
        for item, stored in zip(items, outcome.stored, strict=True):
            result.article_of[item.id] = stored.id


def final_events(engine: Engine, article_of: dict[str, int]) -> dict[str, int | None]:
    """The event each replayed article is in now (after any merges)."""
    with session_scope(engine) as session:
        event_of_article = events_of_articles(session, list(article_of.values()))
    return {key: event_of_article.get(article) for key, article in article_of.items()}


def gold_labels(path: str | Path) -> dict[str, str]:
    """The `event` labels of a labelled file (lines without one are left out)."""
    labels: dict[str, str] = {}
    for item in read_lines(path):
        if isinstance(item, ReplayLine) and item.raw.get("event") not in (None, ""):
            labels[item.id] = str(item.raw["event"])
    return labels


def bcubed(gold: dict[str, str], predicted: dict[str, Any]) -> tuple[float, float, float]:
    """B-cubed precision, recall and F1 over the articles of `gold` (an article missing from
    `predicted`, or predicted None, is its own event)."""
    if not gold:
        return 0.0, 0.0, 0.0
    pred = {
        key: (("single", key) if predicted.get(key) is None else ("event", predicted[key]))
        for key in gold
    }
    gold_members: dict[str, set[str]] = {}
    pred_members: dict[object, set[str]] = {}
    for key in gold:
        gold_members.setdefault(gold[key], set()).add(key)
        pred_members.setdefault(pred[key], set()).add(key)
    precision = recall = 0.0
    for key in gold:
        g, p = gold_members[gold[key]], pred_members[pred[key]]
        common = len(g & p)
        precision += common / len(p)
        recall += common / len(g)
    precision, recall = precision / len(gold), recall / len(gold)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
