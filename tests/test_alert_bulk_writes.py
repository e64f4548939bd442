"""The alerts stage's bulk paths: the matcher's explanation of a match, and rows written
through one compiled statement (store/executemany.py), on SQLite and Postgres."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select, text

from newswatch.alerts.matcher import CompiledRule, RuleSet
from newswatch.alerts.query import Document, evaluate, parse, present
from newswatch.store.alert_models import Notification
from newswatch.store.db import session_scope
from newswatch.store.executemany import executemany
from newswatch.store.models import table_of
from newswatch.store.outbox import enqueue_many
from newswatch.store.upsert import insert_ignoring_conflicts

WORDS = ["sanction", "sanctions", "kyiv", "minister", "defence", "north", "korea", "port"]


def _term(rng: random.Random) -> str:
    word = rng.choice(WORDS)
    roll = rng.random()
    if roll < 0.2:
        return word[:4] + "*"
    if roll < 0.35:
        return f'"{word} {rng.choice(WORDS)}"'
    if roll < 0.5:
        return f"{rng.choice(['title', 'text', 'source'])}:{word}"
    return word


def _query(rng: random.Random) -> str:
    groups = [
        "(" + " OR ".join(_term(rng) for _ in range(rng.randint(1, 3))) + ")"
        for _ in range(rng.randint(1, 3))
    ]
    query = " AND ".join(groups)
    return query + (f" NOT {_term(rng)}" if rng.random() < 0.3 else "")


def test_explain_finds_the_words_present_finds_for_every_matching_rule() -> None:
    rng = random.Random(3)
    rules = [CompiledRule(f"r{i}", parse(_query(rng))) for i in range(300)]
    ruleset = RuleSet(rules)
    explained_some = False
    for _ in range(300):
        doc = Document.of(
            title=" ".join(rng.choices(WORDS, k=rng.randint(0, 4))),
            text=" ".join(rng.choices(WORDS, k=rng.randint(0, 12))),
            source=rng.choice(["north post", "kyiv daily"]),
        )
        expected = [(r.name, present(r.leaves, doc)) for r in rules if evaluate(r.query, doc)]
        got = [(r.name, words) for r, words in ruleset.explain(doc)]
        assert got == expected
        explained_some |= any(words for _, words in got)
    assert explained_some, "the random rules matched nothing: the test proves nothing"


def _notification(event_id: int, at: datetime, channel: str = "ops") -> dict[str, object]:
    return {
        "rule": "r",
        "channel": channel,
        "event_id": event_id,
        "revision": 1,
        "payload": {"title": f"event {event_id}", "articles": [{"id": event_id}]},
        "not_before": at,
        "batch_key": None,
    }


def test_enqueue_many_counts_new_rows_and_skips_known_keys(engine) -> None:  # type: ignore[no-untyped-def]
    at = datetime(2026, 12, 7, 10, 30, tzinfo=UTC)
    with session_scope(engine) as session:
        assert enqueue_many(session, [_notification(1, at), _notification(2, at)]) == 2
    with session_scope(engine) as session:
        again = [_notification(2, at), _notification(2, at, "desk"), _notification(3, at)]
        assert enqueue_many(session, again) == 2  # (ops, r:2:1) is queued already
    with session_scope(engine) as session:
        stored = session.execute(select(Notification).order_by(Notification.id)).scalars().all()
    assert [(n.channel, n.idempotency_key) for n in stored] == [
        ("ops", "r:1:1"),
        ("ops", "r:2:1"),
        ("desk", "r:2:1"),
        ("ops", "r:3:1"),
    ]
    first = stored[0]
    assert first.payload == {
        "title": "event 1",
        "articles": [{"id": 1}],
        "idempotency_key": "r:1:1",
    }
    assert first.not_before == at and first.status == "pending" and first.attempts == 0


def test_enqueue_many_stores_shared_entries_as_each_payload_says(engine) -> None:  # type: ignore[no-untyped-def]
    """Payloads sharing article entries (an event's notifications to several rules) and one
    payload object sent to two channels (its keyed copy made and encoded once): each stored
    payload reads back as its own dict with its key; also without articles, and text that
    JSON escapes."""
    at = datetime(2026, 12, 7, 10, 30, tzinfo=UTC)
    kyiv = {"id": 7, "title": 'Kyïv: "talks" \\ 東京', "sources": ["a", "b"], "url": None}
    port = {"id": 8, "title": "port\nclosed", "sources": [], "url": "https://x.example/8"}
    shared = {"rule": "r2", "why": {"window": 86400.0}, "articles": [port, kyiv]}
    rows = [
        {**_notification(5, at), "payload": {"rule": "r", "articles": [kyiv, port]}},
        {**_notification(5, at), "rule": "r2", "payload": shared},
        {**_notification(5, at, "desk"), "rule": "r2", "payload": shared},
        {**_notification(6, at), "payload": {"rule": "r", "articles": []}},
        {**_notification(9, at), "payload": {}},
    ]
    with session_scope(engine) as session:
        assert enqueue_many(session, rows) == 5
    with session_scope(engine) as session:
        stored = session.execute(select(Notification).order_by(Notification.id)).scalars().all()
        # A JSON object in the store, not a string holding one: SQL reads into it.
        rules = session.execute(text("SELECT payload FROM notifications ORDER BY id")).scalars()
        assert all(not isinstance(p, str) or p.startswith("{") for p in rules)
    expected = [{**r["payload"], "idempotency_key": f"{r['rule']}:{r['event_id']}:1"} for r in rows]
    assert [n.payload for n in stored] == expected
    assert [n.channel for n in stored] == ["ops", "ops", "desk", "ops", "ops"]


def test_executemany_stores_what_sqlalchemy_stores(engine) -> None:  # type: ignore[no-untyped-def]
    """The same rows through session.execute and through executemany: the same text in the
    store, column for column (times, JSON), also for a value object shared by rows."""
    table = table_of(Notification)
    shared_time = datetime(2026, 3, 29, 1, 30, tzinfo=UTC) + timedelta(microseconds=7)
    shared_payload = {"tags": ["ä", "b"], "n": None}
    keys = ("rule", "channel", "event_id", "idempotency_key", "payload", "not_before")
    keys += ("revision", "status", "attempts", "created_at")

    def rows(channel: str) -> list[tuple[object, ...]]:
        payloads = [shared_payload if i % 2 else {"i": i} for i in range(6)]
        return [
            ("r", channel, i, f"k{i}", payload, shared_time, 1, "pending", 0, shared_time)
            for i, payload in enumerate(payloads)
        ]

    with session_scope(engine) as session:
        session.execute(insert(table), [dict(zip(keys, row, strict=True)) for row in rows("a")])
        unique = [table.c.channel, table.c.idempotency_key]
        statement = insert_ignoring_conflicts(session, table, unique)
        assert executemany(session, statement, keys, rows("b")) == 6
        assert executemany(session, statement, keys, rows("b")[:2]) == 0  # known: skipped
        try:  # a column left out is an error, not a default filled in
            executemany(session, statement, keys[:-1], [row[:-1] for row in rows("c")])
        except ValueError as exc:
            assert "created_at" in str(exc)
        else:
            raise AssertionError("a row without created_at was written")
    raw = text(
        "SELECT event_id, CAST(payload AS TEXT), CAST(not_before AS TEXT) FROM notifications "
        "WHERE channel = :channel ORDER BY event_id"
    )
    with engine.connect() as conn:
        by_sqlalchemy = conn.execute(raw, {"channel": "a"}).all()
        by_executemany = conn.execute(raw, {"channel": "b"}).all()
    assert len(by_sqlalchemy) == 6
    assert by_executemany == by_sqlalchemy
