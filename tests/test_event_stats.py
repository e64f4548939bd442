"""The events table's counts stay equal to a recount of the store, though ingest updates
them from each batch's own articles (kept in memory) instead of recounting big events: across
batches, merges, splits, new sightings of known articles and a restart, on SQLite and
Postgres. And every article's stored event is the one the in-memory clustering holds."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from newswatch.config import FileConfig, Settings
from newswatch.pipeline import Pipeline
from newswatch.replay import replay
from newswatch.store.columns import as_utc
from tests.conftest import SHARED_DATA, shared_corpus

ECB = SHARED_DATA / "grouping" / "ecbplus-dev.jsonl"

# Written independently of the code under test: what each live event should say.
RECOUNT = """
SELECT e.id, e.article_count, e.source_count, e.first_seen, e.last_seen,
       (SELECT count(*) FROM articles a WHERE a.event_id = e.id) AS articles,
       (SELECT count(DISTINCT s.source_id) FROM articles a
          JOIN sightings s ON s.article_id = a.id WHERE a.event_id = e.id) AS sources
FROM events e WHERE e.merged_into IS NULL
"""


def spans(conn) -> dict[int, tuple[datetime, datetime]]:  # type: ignore[no-untyped-def]
    """Each event's earliest and latest article time: publication, unless missing or more
    than an hour after the article was first seen (then first seen)."""
    out: dict[int, tuple[datetime, datetime]] = {}
    rows = conn.execute(text("SELECT event_id, published, first_seen FROM articles"))
    for event_id, published, first_seen in rows:
        seen = as_utc(first_seen)
        at = seen
        if published is not None and as_utc(published) <= seen + timedelta(hours=1):
            at = as_utc(published)
        first, last = out.get(event_id, (at, at))
        out[event_id] = (min(first, at), max(last, at))
    return out


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _pipeline(engine) -> Pipeline:  # type: ignore[no-untyped-def]
    return Pipeline(engine, FileConfig(), Settings(_env_file=None))  # type: ignore[call-arg]


def test_event_counts_equal_a_recount(engine, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    shared_corpus(ECB)
    monkeypatch.setattr("newswatch.replay.BATCH_LINES", 60)  # many batches
    rows = [json.loads(line) for line in ECB.read_text(encoding="utf-8").splitlines()]
    for n, row in enumerate(rows):
        row["source"] = f"outlet-{n % 7}"
    first = _write(tmp_path / "first.jsonl", rows[:250])
    second = _write(tmp_path / "second.jsonl", rows[250:])
    # The same articles (same GUIDs) carried by other outlets: sightings, no new articles.
    again = _write(
        tmp_path / "again.jsonl",
        [dict(r, source=f"other-{n % 3}") for n, r in enumerate(rows[::9])],
    )
    # And known articles carried by several outlets in one batch: each outlet counts.
    widely = _write(
        tmp_path / "widely.jsonl",
        [dict(r, source=f"wire-{k}") for r in rows[::23] for k in range(3)],
    )
    replay(engine, _pipeline(engine), first)
    restarted = _pipeline(engine)  # rebuilds the grouping state from the store
    replay(engine, restarted, second)
    replay(engine, restarted, again)
    replay(engine, restarted, widely)

    with engine.connect() as conn:
        events = conn.execute(text(RECOUNT)).mappings().all()
        span = spans(conn)
        merged = conn.execute(
            text("SELECT count(*) FROM events WHERE merged_into IS NOT NULL")
        ).scalar()
        split = conn.execute(text("SELECT count(*) FROM events WHERE split_from IS NOT NULL"))
        stored = dict(conn.execute(text("SELECT id, event_id FROM articles")).all())
    assert len(events) > 20 and merged >= 1  # the stream exercised merges
    assert split.scalar() >= 2  # and splits
    clusterer = restarted.grouper.clusterer  # type: ignore[union-attr]
    assert len(clusterer.article_event) == len(stored)
    for article_id, event_id in clusterer.article_event.items():
        assert stored[article_id] == clusterer.resolve(event_id), article_id
    assert max(e["source_count"] for e in events) > 3  # and sightings at other outlets
    for e in events:
        assert e["article_count"] == e["articles"], dict(e)
        assert e["source_count"] == max(e["sources"], 1), dict(e)
        assert (as_utc(e["first_seen"]), as_utc(e["last_seen"])) == span[e["id"]], dict(e)
