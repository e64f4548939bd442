"""`newswatch replay`, `evaluate` and `events` as a user runs them, on SQLite and Postgres."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
from sqlalchemy import text

from newswatch.config import FileConfig, Settings
from newswatch.pipeline import Pipeline
from newswatch.replay import bcubed, gold_labels, parse_line, replay
from newswatch.shared_types import ParsedEntry
from newswatch.store.articles import ensure_source
from newswatch.store.db import make_engine, session_scope
from tests.cli_support import newswatch
from tests.conftest import SHARED_DATA, shared_corpus

STREAM = Path(__file__).parent / "fixtures" / "replay" / "stream.jsonl"
ECB = SHARED_DATA / "grouping" / "ecbplus-dev.jsonl"


def _assignments(path: Path) -> dict[str, int]:
    return {r["id"]: r["event_id"] for r in map(json.loads, path.read_text().splitlines())}


def test_replay_groups_stream_and_reports_bad_lines(cli_env, tmp_path):
    out = tmp_path / "assignments.jsonl"
    result = newswatch("replay", str(STREAM), "--assignments", str(out), env=cli_env)
    # Two bad lines: reported with their line numbers, the others ingested, exit status 1.
    assert result.returncode == 1, result.stderr
    assert f"{STREAM}:4: col" in result.stderr and "not JSON" in result.stderr
    assert f"{STREAM}:6: no title and no text" in result.stderr
    assigned = _assignments(out)
    assert sorted(assigned) == ["r1", "r2", "r3", "r4", "r5", "r6", "r7"]
    quake = {assigned[k] for k in ("r1", "r3", "r5", "r7")}
    summit = {assigned[k] for k in ("r2", "r4", "r6")}
    assert len(quake) == 1 and len(summit) == 1 and quake != summit

    engine = make_engine(cli_env["DATABASE_URL"])
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, article_count, source_count FROM event_overview ORDER BY id")
        ).all()
        grouped = conn.execute(
            text("SELECT group_stage, COUNT(*) FROM articles GROUP BY group_stage")
        )
        stages = {row[0]: row[1] for row in grouped}
        fingerprints = conn.execute(
            text("SELECT COUNT(*) FROM articles WHERE fingerprint IS NOT NULL")
        ).scalar()
        entities = conn.execute(
            text("SELECT top_entities FROM events WHERE id = :id"), {"id": next(iter(summit))}
        ).scalar()
    engine.dispose()
    counts = {r.id: (r.article_count, r.source_count) for r in rows}
    # r7 is the same URL as r1 from a fourth outlet: one article, one more source.
    assert counts == {quake.pop(): (3, 4), summit.pop(): (3, 3)}
    assert stages.get("new") == 2 and sum(stages.values()) == 6
    assert fingerprints == 6  # every text is long enough for a MinHash signature
    entities = json.loads(entities) if isinstance(entities, str) else entities
    assert "Belousov" in entities and any(
        e in entities for e in ("Pyongyang", "North Korea", "North Korean")
    )


def test_events_list_and_show_explain(cli_env, tmp_path):
    out = tmp_path / "a.jsonl"
    newswatch("replay", str(STREAM), "--assignments", str(out), env=cli_env)
    summit = _assignments(out)["r2"]

    listed = newswatch("events", "list", "--min-sources", "3", "--json", env=cli_env)
    assert listed.returncode == 0, listed.stderr
    events = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {e["source_count"] for e in events} >= {3} and len(events) == 2

    by_size = newswatch("events", "list", "--sort", "size", "--json", env=cli_env)
    sizes = [json.loads(line)["source_count"] for line in by_size.stdout.splitlines()]
    assert by_size.returncode == 0 and sizes == sorted(sizes, reverse=True) and len(sizes) == 2
    starred = newswatch("events", "list", "--starred", "--json", env=cli_env)
    assert starred.returncode == 0 and starred.stdout == ""  # nobody starred anything
    searched = newswatch("events", "list", "-q", "Belousov", "--json", env=cli_env)
    assert [json.loads(line)["id"] for line in searched.stdout.splitlines()] == [summit]
    bad = newswatch("events", "list", "-q", "(Belousov", env=cli_env)
    assert bad.returncode == 2 and "--query" in bad.stderr

    shown = newswatch("events", "show", str(summit), "--explain", env=cli_env)
    assert shown.returncode == 0, shown.stderr
    assert "3 articles from 3 sources" in shown.stdout
    assert "Gwan Cholle" in shown.stdout and "[agency-d]" in shown.stdout
    assert "opened the event" in shown.stdout and "similar to the event (score" in shown.stdout

    missing = newswatch("events", "show", "999999", env=cli_env)
    assert missing.returncode == 1 and "no event with id 999999" in missing.stderr


def test_a_split_shows_in_events_show_and_the_assignments(cli_env, tmp_path):
    """Two drink-driving arrests of Chargers players (ECB+ topic 35) mix, then split: the
    assignments end in two pure events and `events show` tells how."""
    rows = [json.loads(x) for x in shared_corpus(ECB).read_text(encoding="utf-8").splitlines()]
    topic = tmp_path / "topic.jsonl"
    topic.write_text("".join(json.dumps(r) + "\n" for r in rows if r["event"][:7] == "ecb-35_"))
    out = tmp_path / "a.jsonl"
    assert newswatch("replay", str(topic), "--assignments", str(out), env=cli_env).returncode == 0
    assigned = _assignments(out)
    labels = gold_labels(topic)
    groups: dict[int, set[str]] = {}
    for key, event_id in assigned.items():
        groups.setdefault(event_id, set()).add(labels[key])
    assert len(groups) == 2 and all(len(g) == 1 for g in groups.values())

    kept, new = sorted(groups)
    shown = json.loads(newswatch("events", "show", str(new), "--json", env=cli_env).stdout)
    assert shown["split_from"] == kept and shown["split_off"] == []
    old_text = newswatch("events", "show", str(kept), "--explain", env=cli_env).stdout
    new_text = newswatch("events", "show", str(new), "--explain", env=cli_env).stdout
    assert f"events split off this one: {new}" in old_text
    assert f"split off event {kept}: a different event of the same kind" in new_text
    # On the article whose arrival split the event (in one part or the other):
    assert f"split off into event {new}" in old_text + new_text


def test_restart_continues_the_same_events(cli_env, tmp_path):
    """A second process loads the grouping state from the store: a later report joins the
    event opened before the restart."""
    lines = [json.loads(x) for x in STREAM.read_text().splitlines() if x.startswith('{"id": "r')]
    first, later = tmp_path / "first.jsonl", tmp_path / "later.jsonl"
    first.write_text("\n".join(json.dumps(r) for r in lines[:2]) + "\n")
    later.write_text("\n".join(json.dumps(r) for r in lines[2:6]) + "\n")
    a1, a2 = tmp_path / "a1.jsonl", tmp_path / "a2.jsonl"
    assert newswatch("replay", str(first), "--assignments", str(a1), env=cli_env).returncode == 0
    assert newswatch("replay", str(later), "--assignments", str(a2), env=cli_env).returncode == 0
    before, after = _assignments(a1), _assignments(a2)
    assert after["r3"] == after["r5"] == before["r1"]
    assert after["r4"] == after["r6"] == before["r2"]


def test_evaluate_prints_bcubed_against_labels(cli_env):
    result = newswatch("evaluate", str(STREAM), "--json", env=cli_env)
    # The two bad lines are reported; the scores cover the labelled, good lines.
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["articles"] == 7 and scores["gold_events"] == 2
    assert scores["f1"] == 1.0 and scores["events"] == 2


def test_bcubed_matches_definition():
    gold = {"a": "x", "b": "x", "c": "y", "d": "y"}
    assert bcubed(gold, {"a": 1, "b": 1, "c": 2, "d": 2}) == (1.0, 1.0, 1.0)
    p, r, f = bcubed(gold, {"a": 1, "b": 1, "c": 1, "d": 1})
    assert (p, r) == (0.5, 1.0) and round(f, 4) == 0.6667
    p, r, _ = bcubed(gold, {})  # all singletons
    assert (p, r) == (1.0, 0.5)


def test_parse_line_errors_name_the_field():
    for raw, message in [
        ('{"id": 1, "title": 5}', "field 'title': expected a string"),
        ('{"id": 1, "title": "t", "published": "yesterday"}', "not an ISO 8601 time"),
        ("[1, 2]", "not a JSON object"),
    ]:
        try:
            parse_line("f.jsonl", 9, raw)
        except ValueError as exc:
            assert str(exc).startswith("f.jsonl:9: ") and message in str(exc)
        else:
            raise AssertionError(f"accepted {raw}")
    assert len(gold_labels(STREAM)) == 7


def test_a_lone_surrogate_does_not_fail_the_batch(cli_env, tmp_path):
    # "\ud800" is valid JSON but no UTF-8 can hold it: stored as U+FFFD, the rest unharmed.
    body = "A strong quake hit the coast on Monday and many people fled, officials said. " * 3
    lines = [
        f'{{"id": "s1", "source": "x", "title": "Quake \\ud800 hits", "text": "{body} \\udc00"}}',
        json.dumps({"id": "s2", "source": "x", "title": "Budget passes", "text": "Parliament."}),
    ]
    stream = tmp_path / "odd.jsonl"
    stream.write_text("\n".join(lines) + "\n")
    result = newswatch("replay", str(stream), "--no-alerts", env=cli_env)
    assert result.returncode == 0, result.stderr
    engine = make_engine(cli_env["DATABASE_URL"])
    with engine.connect() as conn:
        titles = conn.execute(text("SELECT title FROM articles ORDER BY id")).scalars().all()
    engine.dispose()
    assert titles == ["Quake \ufffd hits", "Budget passes"]


@pytest.mark.parametrize("enabled", [True, False])
def test_replay_pauses_garbage_collection_per_batch(sqlite_engine, enabled):
    """Automatic collection is off while a batch is ingested and back as it was afterwards,
    also when the batch fails."""
    pipeline = Pipeline(sqlite_engine, FileConfig(), Settings(_env_file=None))  # type: ignore[call-arg]
    seen: list[bool] = []
    ingest_many = pipeline._ingest_many  # what ingest_many runs with collection paused

    def spy(jobs):  # type: ignore[no-untyped-def]
        seen.append(gc.isenabled())
        if len(seen) > 1:
            raise RuntimeError("boom")
        return ingest_many(jobs)

    pipeline._ingest_many = spy  # type: ignore[method-assign]
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        replay(sqlite_engine, pipeline, STREAM)
        assert seen == [False] and gc.isenabled() is enabled
        with pytest.raises(RuntimeError):
            replay(sqlite_engine, pipeline, STREAM)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_the_pipeline_pauses_garbage_collection_while_it_ingests(sqlite_engine):
    """The service's polls get the pause too: collection is off inside ingest_many (seen by a
    job's after-callback), back on afterwards, and back on when a job fails."""
    pipeline = Pipeline(sqlite_engine, FileConfig(), Settings(_env_file=None))  # type: ignore[call-arg]
    with session_scope(sqlite_engine) as session:
        source_id = ensure_source(session, "wire").id
    seen: list[bool] = []

    def after(_session, _source, _result):  # type: ignore[no-untyped-def]
        seen.append(gc.isenabled())

    assert gc.isenabled()
    entries = [ParsedEntry(url="https://wire.example/1", title="Quake hits", text="A quake.")]
    results = pipeline.ingest_many([(source_id, entries, after)])
    assert seen == [False] and gc.isenabled()
    assert not isinstance(results[0], Exception) and results[0].new == 1
    with pytest.raises(LookupError):  # no such source
        pipeline.ingest_many([(source_id + 99, entries, None)])
    assert gc.isenabled()
