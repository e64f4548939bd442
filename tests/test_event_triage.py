"""Triage marks in the store, and a muted event's growth not notified, on SQLite and Postgres."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select
from sqlmodel import Session

from newswatch.alerts.config import ChannelConfig, RuleConfig
from newswatch.alerts.stage import AlertStage as AlertEngine
from newswatch.grouping.changes import EventChange
from newswatch.store.alert_models import AlertState, Notification
from newswatch.store.event_triage import EventTriage, is_muted, set_mark, triage_of
from newswatch.store.events import Merge, apply_regroupings
from newswatch.store.models import Article, Event, Sighting, Source

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
TITLE = "Dam breach floods the valley"


def add_report(session: Session, source: str, event_id: int | None) -> EventChange:
    """A report at `source` (a new source row), opening an event or joining `event_id`."""
    row = Source(name=source, url=f"http://{source}.example/feed", configured_url="x")
    session.add(row)
    session.flush()
    article = Article(
        url=f"http://{source}.example/a",
        title=TITLE,
        published=NOW,
        first_seen=NOW,
        content_hash=hashlib.sha1(source.encode()).hexdigest(),
        source_id=row.id,
    )
    session.add(article)
    session.flush()
    assert article.id is not None and row.id is not None
    opened = event_id is None
    article.event_id = event_id = article.id if event_id is None else event_id
    session.add(Sighting(article_id=article.id, source_id=row.id))
    if opened:
        session.add(Event(id=event_id, title=TITLE, first_seen=NOW, last_seen=NOW))
    session.flush()
    return EventChange(article.id, event_id, opened)


def alerts() -> AlertEngine:
    rule = RuleConfig(name="flood", query="flood*", channels=["ops"], min_sources=2, updates=True)
    channel = ChannelConfig(name="ops", type="webhook", url="http://127.0.0.1:9/hook")
    return AlertEngine([rule], [channel], clock=lambda: NOW)


def sent(session: Session) -> list[int]:
    return list(session.execute(select(Notification.revision)).scalars())  # type: ignore[arg-type]


def test_marks_keep_who_and_when_and_undo(engine: Engine) -> None:
    with Session(engine) as session:
        event_id = add_report(session, "s1", None).event_id
        set_mark(session, event_id, "ack", True, by="dana", now=NOW)
        set_mark(session, event_id, "ack", True, by="eli", now=NOW + timedelta(hours=1))
        set_mark(session, event_id, "star", True, now=NOW)
        row = triage_of(session, [event_id, 424242])[event_id]
        assert (row.acknowledged_at, row.acknowledged_by) == (NOW, "dana")
        assert row.starred_at == NOW and row.starred_by is None and row.muted_at is None
        assert not is_muted(session, event_id)
        set_mark(session, event_id, "ack", False, now=NOW)
        assert triage_of(session, [event_id])[event_id].acknowledged_at is None
        # the marks go with their event
        session.execute(delete(Event).where(Event.id == event_id))  # type: ignore[arg-type]
        session.flush()
        session.expire_all()
        assert session.get(EventTriage, event_id) is None
        session.rollback()


def test_a_muted_event_does_not_notify_until_unmuted(engine: Engine) -> None:
    engine_ = alerts()
    with Session(engine) as session:
        first = add_report(session, "s1", None)
        event_id = first.event_id
        engine_.on_changes(session, [first])
        set_mark(session, event_id, "mute", True, by="dana", now=NOW)
        assert is_muted(session, event_id)
        # corroborated while muted: decided and recorded as silenced, nothing queued
        assert engine_.on_changes(session, [add_report(session, "s2", event_id)]) == []
        assert sent(session) == []
        state = session.get(AlertState, ("flood", event_id))
        assert state is not None and state.status == "silenced"
        set_mark(session, event_id, "mute", False, now=NOW)
        fired = engine_.on_changes(session, [add_report(session, "s3", event_id)])
        assert [f.sources for f in fired] == [3] and sent(session) == [1]


def test_growth_after_a_mute_is_not_notified(engine: Engine) -> None:
    engine_ = alerts()
    with Session(engine) as session:
        first = add_report(session, "s1", None)
        event_id = first.event_id
        engine_.on_changes(session, [first, add_report(session, "s2", event_id)])
        assert sent(session) == [1]
        set_mark(session, event_id, "mute", True, now=NOW)
        for i in range(3, 9):  # past the update thresholds of 4 and 8 sources
            assert engine_.on_changes(session, [add_report(session, f"s{i}", event_id)]) == []
        assert sent(session) == [1]


def test_a_merge_carries_the_star_but_not_seen_or_muted(engine: Engine) -> None:
    """The survivor of a merge holds reports nobody marked seen: only the star moves."""
    with Session(engine) as session:
        gone = add_report(session, "s1", None).event_id
        keep = add_report(session, "s2", None).event_id
        for mark in ("ack", "star", "mute"):
            set_mark(session, gone, mark, True, by="dana", now=NOW)  # type: ignore[arg-type]
        apply_regroupings(session, [Merge(gone=gone, keep=keep)], NOW + timedelta(minutes=1))
        survivor = triage_of(session, [keep])[keep]
        assert (survivor.starred_at, survivor.starred_by) == (NOW, "dana")
        assert survivor.acknowledged_at is None and not is_muted(session, keep)
