"""The pipeline writes each new article once, with its event columns, under ids reserved
before the INSERT; the result is the same as inserting first and updating afterwards."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, text

from newswatch.config import FileConfig, Settings
from newswatch.grouping.stage import EventGrouper
from newswatch.pipeline import Pipeline
from newswatch.shared_types import ParsedEntry
from newswatch.store.articles import (
    ensure_source,
    ensure_sources,
    reserve_article_ids,
    store_batch,
)
from newswatch.store.columns import as_utc
from newswatch.store.db import session_scope

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
STORY = (
    "Firefighters in Valparaiso battled a wildfire that destroyed hundreds of homes on the "
    "hills above the port on Saturday, officials said, as strong winds spread the flames. "
)
OTHER = (
    "The central bank of Norway raised its policy rate by a quarter point in Oslo on "
    "Thursday and signalled another increase before the end of the year. "
)
COLUMNS = "event_id, duplicate_of, group_stage, group_score, group_explain, fingerprint"


def _entries() -> list[tuple[str, ParsedEntry]]:
    """A story, a copy of it elsewhere (near-duplicate), another story, the first again under
    its own URL at a second outlet (a sighting, not a new article)."""
    story = STORY * 8
    return [
        ("a", ParsedEntry(url="https://a.example/1", title="Wildfire in Valparaiso", text=story,
                          published=T0)),
        ("b", ParsedEntry(url="https://b.example/9", title="Valparaiso wildfire",
                          text=story + "Reporting by B.", published=T0 + timedelta(minutes=5))),
        ("a", ParsedEntry(url="https://a.example/2", title="Norway raises rates",
                          text=OTHER * 8, published=T0 + timedelta(minutes=9))),
        ("c", ParsedEntry(url="https://a.example/1", title="Wildfire in Valparaiso", text=story,
                          published=T0)),
    ]  # fmt: skip


def _rows(engine) -> list[tuple]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT id, {COLUMNS} FROM articles ORDER BY id")).all()
    # JSON comes back as text from SQLite, parsed from Postgres; bytes as memoryview or bytes.
    return [
        (*r[:5], json.loads(r[5]) if isinstance(r[5], str) else r[5], bytes(r[6] or b""))
        for r in rows
    ]


def test_new_articles_are_inserted_with_their_event_columns(engine) -> None:  # type: ignore[no-untyped-def]
    pipeline = Pipeline(engine, FileConfig(), Settings(_env_file=None))  # type: ignore[call-arg]
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.split()).upper())

    with session_scope(engine) as session:
        ids = {n: ensure_source(session, n).id for n in "abc"}
    event.listen(engine, "before_cursor_execute", record)
    try:
        results = pipeline.ingest_many([(ids[s], [e], None) for s, e in _entries()])
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert not [s for s in statements if s.startswith("UPDATE ARTICLES")]
    assert [r.new for r in results] == [1, 1, 1, 0]  # type: ignore[union-attr]
    rows = _rows(engine)
    assert len(rows) == 3
    (first, e1, dup1, stage1, _s, explain1, fp1), copy, other = rows
    assert (e1, dup1, stage1, explain1["stage"]) == (first, None, "new", "new")
    assert fp1 is not None and len(fp1) > 0
    assert (copy[1], copy[2], copy[3]) == (first, first, "duplicate")
    assert (other[1], other[3]) == (other[0], "new")

    # The same entries stored first and grouped afterwards (an UPDATE of each row) give the
    # same rows: the single INSERT changes nothing but the statements.
    with engine.connect() as conn:
        for table in ("sightings", "events", "articles"):
            conn.execute(text(f"DELETE FROM {table}"))
        conn.commit()
    grouper = EventGrouper(FileConfig().grouping)
    with session_scope(engine) as session:
        sources = {n: ensure_source(session, n) for n in "abc"}
        stored = store_batch(session, [(sources[s], e) for s, e in _entries()])
        grouper.assign_batch(session, stored)
    offset = _rows(engine)[0][0] - first

    def shifted(row: tuple) -> tuple:
        ids = tuple(v - offset if isinstance(v, int) else v for v in row[:3])
        explain = dict(row[5])
        if "duplicate_of" in explain:
            explain["duplicate_of"] -= offset
        return (*ids, row[3], row[4], explain, row[6])

    assert [shifted(r) for r in _rows(engine)] == rows


def test_reserved_ids_follow_the_stored_ones_and_are_used_by_the_insert(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        source = ensure_source(session, "a")
        first = store_batch(session, [(source, _entries()[0][1])])
    with session_scope(engine) as session:
        reserved = reserve_article_ids(session, 3)
        assert reserved == sorted(reserved) and len(set(reserved)) == 3
        assert reserved[0] > first[0].id
        source = ensure_source(session, "a")
        items = [(source, e) for _s, e in _entries()[1:3]]
        stored = store_batch(session, items, assign=lambda new: [{} for _ in new])
    assert [a.id for a in stored] > reserved[:1]
    assert [r[0] for r in _rows(engine)] == [first[0].id, *(a.id for a in stored)]


def test_sqlite_reservation_holds_the_write_lock(sqlite_engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Between the reservation and the commit no other writer can insert (it would take the
    same ids): the reserving transaction holds SQLite's write lock from the reservation on."""
    path = sqlite_engine.url.database
    with session_scope(sqlite_engine) as session:
        reserve_article_ids(session, 2)
        other = sqlite3.connect(path, timeout=0)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("INSERT INTO sources (name) VALUES ('x')")
        finally:
            other.close()
    other = sqlite3.connect(path, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")  # free again after the commit
        other.rollback()
    finally:
        other.close()


def test_ensure_sources_finds_stored_ones_and_adds_the_rest_in_order(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        known = ensure_source(session, "known").id
    with session_scope(engine) as session:
        found = ensure_sources(session, ["new-b", "known", "new-a", "new-b"])
        assert list(found) == ["new-b", "known", "new-a"]
        assert found["known"].id == known
        assert known < found["new-b"].id < found["new-a"].id  # type: ignore[operator]
        assert (found["new-a"].kind, found["new-a"].enabled) == ("replay", False)
    with session_scope(engine) as session:
        assert {n: s.id for n, s in ensure_sources(session, ["new-a", "known"]).items()} == {
            "new-a": found["new-a"].id,
            "known": known,
        }


def test_an_archive_article_and_its_copies_stay_out_of_each_others_events(engine) -> None:  # type: ignore[no-untyped-def]
    """Issue 14, item 3: an article published in 2006 sat in an event of 2026 reports. An
    article counts at its publication time, else at its first-seen time; nothing joins an
    event more than window_hours away from that time, near-duplicate copies included."""
    pipeline = Pipeline(engine, FileConfig(), Settings(_env_file=None))  # type: ignore[call-arg]
    story, now = STORY * 8, datetime.now(UTC)
    with session_scope(engine) as session:
        ids = {n: ensure_source(session, n).id for n in "abcd"}
    jobs = [
        ("a", ParsedEntry(url="https://a.example/archive", title="Wildfire in Valparaiso",
                          text=story, published=datetime(2006, 2, 3, tzinfo=UTC))),
        # Copies: without a publication time (counted now), and dated an hour ago.
        ("b", ParsedEntry(url="https://b.example/1", title="Wildfire in Valparaiso",
                          text=story + "Reporting by B.")),
        ("c", ParsedEntry(url="https://c.example/1", title="Valparaiso wildfire",
                          text=story + "Reporting by C.", published=now - timedelta(hours=1))),
        # A copy dated back a year: no event is near it.
        ("d", ParsedEntry(url="https://d.example/1", title="Wildfire in Valparaiso",
                          text=story + "Reporting by D.", published=now - timedelta(days=365))),
    ]  # fmt: skip
    pipeline.ingest_many([(ids[s], [e], None) for s, e in jobs])
    archive, undated, recent, year_ago = (row[:4] for row in _rows(engine))
    assert (archive[1], archive[3]) == (archive[0], "new")
    assert (undated[1], undated[3]) == (undated[0], "new")  # not the archive's event
    assert (recent[1], recent[2], recent[3]) == (undated[0], undated[0], "duplicate")
    assert (year_ago[1], year_ago[3]) == (year_ago[0], "new")
    with engine.connect() as conn:
        spans = {
            r[0]: (as_utc(r[1]), as_utc(r[2]))
            for r in conn.execute(text("SELECT id, first_seen, last_seen FROM events"))
        }
    assert {first.year for first in spans[archive[0]]} == {2006}
    assert min(spans[undated[0]]) >= now - timedelta(hours=2)  # the archive's time is not in it


def test_a_batch_writes_its_articles_and_sightings_in_a_few_statements(engine) -> None:  # type: ignore[no-untyped-def]
    """New articles: one INSERT of the articles and one of their sightings, whatever their
    number (executemany), none with RETURNING; sightings of stored articles skip those stored
    already (decision 0222). The rows are the ones the entries describe."""
    with session_scope(engine) as session:
        a, b = ensure_source(session, "a"), ensure_source(session, "b")
        known = store_batch(session, [(a, _entries()[2][1])])[0]
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.split()).upper())

    story = _entries()[0][1]
    entries = [
        (a, story),  # new
        (b, story),  # the same new article at a second source: a second sighting
        (a, _entries()[2][1]),  # stored, sighted at a already: no new sighting
        (b, _entries()[2][1]),  # stored, new at b
        *[
            (b, ParsedEntry(url=f"https://b.example/{n}", title=f"Item {n} " * 3))
            for n in range(30)
        ],
    ]
    event.listen(engine, "before_cursor_execute", record)
    try:
        with session_scope(engine) as session:
            a, b = ensure_source(session, "a"), ensure_source(session, "b")
            stored = store_batch(session, [(s, e) for s, e in entries])
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert [x.is_new for x in stored[:4]] == [True, False, False, False]
    assert all(x.is_new for x in stored[4:])
    assert [x.new_sighting for x in stored[:4]] == [True, True, False, True]
    assert stored[2].id == stored[3].id == known.id and stored[1].id == stored[0].id
    inserts = [s for s in statements if s.startswith("INSERT INTO ARTICLES")]
    assert len(inserts) == 1 and "RETURNING" not in inserts[0]
    sightings = [s for s in statements if s.startswith("INSERT INTO SIGHTINGS")]
    # One for the new articles' sightings; one (ON CONFLICT ..., RETURNING) for the stored one's.
    assert len(sightings) == 2 and sum("RETURNING" in s for s in sightings) == 1
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.url, s.source_id FROM sightings s JOIN articles a ON a.id = s.article_id"
            )
        ).all()
        titles = dict(conn.execute(text("SELECT url, title FROM articles")).all())
    pairs = {(url, source) for url, source in rows}
    assert len(rows) == len(pairs) == 3 + 30 + 1  # story at a and b, 30 items, known at a and b
    assert {(story.url, a.id), (story.url, b.id), (_entries()[2][1].url, b.id)} <= pairs
    assert titles["https://b.example/7"] == "Item 7 " * 3


def test_deferred_rows_of_one_table_with_different_columns_are_all_written(engine) -> None:  # type: ignore[no-untyped-def]
    """Deferred inserts and updates go through store/executemany, one statement a table and
    set of columns; rows that set other columns get their own."""
    from newswatch.store.db import defer_insert, defer_update
    from newswatch.store.models import Fetch, Source, table_of

    fetches, sources = table_of(Fetch), table_of(Source)
    with session_scope(engine) as session:
        a, b = ensure_source(session, "a"), ensure_source(session, "b")
    base = {"started_at": T0, "url": "https://a.example/feed", "outcome": "ok"}
    with session_scope(engine) as session:
        defer_insert(session, fetches, [{**base, "source_id": a.id, "status": 200}])
        defer_insert(session, fetches, [{**base, "source_id": b.id, "error": "boom"}])
        defer_insert(session, fetches, [{**base, "source_id": b.id, "status": 304}])
        defer_update(session, sources, a.id, {"last_status": 200, "title": "A"})
        defer_update(session, sources, b.id, {"last_error": "boom"})
    with engine.connect() as conn:
        logged = conn.execute(
            text("SELECT source_id, status, error FROM fetches ORDER BY id")
        ).all()
        states = dict(
            (r[0], r[1:])
            for r in conn.execute(text("SELECT id, last_status, title, last_error FROM sources"))
        )
    assert sorted(logged, key=str) == sorted(
        [(a.id, 200, None), (b.id, None, "boom"), (b.id, 304, None)], key=str
    )
    assert states[a.id] == (200, "A", None) and states[b.id] == (None, None, "boom")
