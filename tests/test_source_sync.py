"""Syncing the config file's sources into the store (store/sources.py), on SQLite and Postgres:
set-based statements that must keep every rule the per-object sync had."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, event
from sqlmodel import select

from newswatch.config import DEFAULT_INTERVAL, SourceConfig
from newswatch.store.db import session_scope
from newswatch.store.models import Source
from newswatch.store.sources import (
    add_source,
    record_state,
    schedulable_sources,
    sources_by_id,
    sync_config_sources,
)


def _sync(engine: Engine, configs: list[SourceConfig]) -> dict[str, int]:
    with session_scope(engine) as session:
        return sync_config_sources(session, configs)


def _by_name(engine: Engine) -> dict[str, Source]:
    with session_scope(engine) as session:
        return {s.name: s for s in session.exec(select(Source)).all()}


def test_sync_adds_updates_and_disables(engine: Engine) -> None:
    first = [
        SourceConfig(name="a", url="https://a.example/feed", interval=timedelta(minutes=5)),
        SourceConfig(name="b", url="https://b.example/feed", kind="auto", tags=["x"]),
        SourceConfig(name="c", url="https://c.example/feed"),
    ]
    assert _sync(engine, first) == {"added": 3, "updated": 0, "unchanged": 0, "disabled": 0}
    with session_scope(engine) as session:
        add_source(session, SourceConfig(name="by-hand", url="https://h.example/feed"))
    # What polling learnt: validators, a detected kind, an error count.
    with session_scope(engine) as session:
        for source in session.exec(select(Source)).all():
            source.etag = f'"{source.name}"'
            source.consecutive_errors = 2
            source.options = {**source.options, "detected_kind": "page"}

    # a: unchanged; b: new URL; c: left the file; d: new.
    second = [
        first[0],
        SourceConfig(name="b", url="https://b.example/moved", kind="auto", tags=["x"]),
        SourceConfig(name="d", url="https://d.example/feed", cron="*/5 * * * *"),
    ]
    counts = _sync(engine, second)
    # `a` (kind auto) keeps the kind polling detected: nothing of its config changed.
    assert counts == {"added": 1, "updated": 1, "unchanged": 1, "disabled": 1}
    found = _by_name(engine)
    a, b, c, d = found["a"], found["b"], found["c"], found["d"]
    assert (a.etag, a.interval_seconds, a.options["detected_kind"]) == ('"a"', 300, "page")
    # A new URL replaces the URL and drops what was learnt about the old one.
    assert (b.url, b.configured_url, b.etag) == ("https://b.example/moved",) * 2 + (None,)
    assert "detected_kind" not in b.options and b.options["tags"] == ["x"]
    assert b.consecutive_errors == 2  # the source's own state is not the config's
    assert not c.enabled and c.etag == '"c"'  # disabled, not deleted
    default = int(DEFAULT_INTERVAL.total_seconds())  # a cron source's interval is unused
    assert (d.cron, d.interval_seconds, d.origin, d.enabled) == (
        "*/5 * * * *",
        default,
        "config",
        True,
    )
    assert found["by-hand"].enabled  # not from the config file: left alone

    # Back in the file: enabled again, as an update.
    assert _sync(engine, [*second, first[2]])["updated"] == 1
    assert _by_name(engine)["c"].enabled
    with session_scope(engine) as session:
        names = sorted(s.name for s in schedulable_sources(session))
    assert names == ["a", "b", "by-hand", "c", "d"]


def test_sync_of_many_sources_reads_them_as_snapshots(engine: Engine) -> None:
    configs = [SourceConfig(name=f"s{i}", url=f"https://h{i}.example/feed") for i in range(1500)]
    assert _sync(engine, configs)["added"] == 1500
    assert _sync(engine, configs) == {"added": 0, "updated": 0, "unchanged": 1500, "disabled": 0}
    with session_scope(engine) as session:
        snapshots = {s.name: s for s in schedulable_sources(session)}
    assert len(snapshots) == 1500
    s7 = snapshots["s7"]
    assert (s7.url, s7.configured_url, s7.kind, s7.interval) == (
        "https://h7.example/feed",
        "https://h7.example/feed",
        "auto",
        DEFAULT_INTERVAL,
    )


def test_poll_states_of_one_transaction_are_one_update_per_set_of_columns(engine: Engine) -> None:
    _sync(engine, [SourceConfig(name=n, url=f"https://{n}.example/feed") for n in "abc"])
    ids = {name: s.id for name, s in _by_name(engine).items()}
    statements: list[str] = []

    def seen(_conn, _cursor, statement, _params, _context, _many):  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.split()).lower())

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with session_scope(engine) as session:
            loaded = sources_by_id(session, list(ids.values()))
            a, b, c = (loaded[ids[n]] for n in "abc")  # type: ignore[index]
            record_state(session, a, {"last_status": 304, "consecutive_errors": 0})
            record_state(session, b, {"last_status": 500, "consecutive_errors": 3})
            record_state(session, c, {"last_status": 200, "title": "C", "consecutive_errors": 0})
            # The loaded objects show the new state and have nothing left for the ORM to flush.
            assert (a.last_status, b.consecutive_errors, c.title) == (304, 3, "C")
            assert not session.dirty
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    updates = [s for s in statements if s.startswith("update sources")]
    assert len(updates) == 2, updates  # {status, errors} for a and b; {+title} for c
    stored = _by_name(engine)
    assert (stored["a"].last_status, stored["a"].consecutive_errors) == (304, 0)
    assert (stored["b"].last_status, stored["b"].consecutive_errors) == (500, 3)
    assert (stored["c"].last_status, stored["c"].title) == (200, "C")
