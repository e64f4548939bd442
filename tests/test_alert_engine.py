"""The rule engine on events: corroboration, once per (rule, event), updates, merges, silences,
noise control and restarts, on SQLite and Postgres.

Events, articles and sightings are written directly (as the grouping stage would) and the
engine is handed the EventChanges, so every case controls exactly which event grows how.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from newswatch.alerts.config import ChannelConfig, RuleConfig
from newswatch.alerts.delivery import DeliveryWorker
from newswatch.alerts.judging import corroboration
from newswatch.alerts.policy import quiet_end, schedule
from newswatch.alerts.query import parse
from newswatch.alerts.silences import (
    add_silence,
    list_silences,
    remove_silence,
    silenced,
    suppressed_counts,
)
from newswatch.alerts.stage import AlertStage as AlertEngine
from newswatch.config import FileConfig, Settings
from newswatch.grouping.changes import EventChange, EventSplit
from newswatch.prometheus_registry import RULE_MATCHES
from newswatch.store.alert_models import AlertState, ArticleMatch, Notification, Silence
from newswatch.store.alerts import matches_of_articles, matches_of_events
from newswatch.store.columns import utcnow
from newswatch.store.events import Merge, SplitOff, apply_regroupings
from newswatch.store.models import Article, Event, Sighting, Source
from tests.alert_support import SECRET, webhook_receiver

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
QUERY = '(Belousov OR "defence minister") AND (DPRK OR "North Korea") NOT sport*'
HIT = "Belousov meets the North Korea defence minister"


def channels() -> list[ChannelConfig]:
    return [
        ChannelConfig(name="ops", type="webhook", url="http://127.0.0.1:9/hook"),
        ChannelConfig(name="desk", type="email", to=["desk@example.org"]),
    ]


def rule(**kw: Any) -> RuleConfig:
    values: dict[str, Any] = {"name": "dprk", "query": QUERY, "channels": ["ops"]}
    values.update(kw)
    return RuleConfig(**values)


class World:
    """Sources, articles and events written the way the grouping stage writes them."""

    def __init__(self, session: Session):
        self.session = session
        self.sources: dict[str, int] = {}
        self.n = 0

    def source(self, name: str) -> int:
        if name not in self.sources:
            row = Source(name=name, url=f"http://{name}.example/feed", configured_url="x")
            self.session.add(row)
            self.session.flush()
            assert row.id is not None
            self.sources[name] = row.id
        return self.sources[name]

    def article(
        self,
        source: str,
        title: str = HIT,
        *,
        event: int | None = None,
        published: datetime | None = None,
        text: str = "",
        duplicate_of: int | None = None,
    ) -> EventChange:
        """A new article at `source`, opening an event or joining `event`."""
        self.n += 1
        row = Article(
            url=f"http://{source}.example/{self.n}",
            title=title,
            text=text,
            published=published or T0,
            first_seen=NOW,
            content_hash=hashlib.sha1(f"{self.n}".encode()).hexdigest(),
            source_id=self.source(source),
            duplicate_of=duplicate_of,
        )
        self.session.add(row)
        self.session.flush()
        assert row.id is not None
        opened = event is None
        event_id = row.id if event is None else event
        row.event_id = event_id
        self.session.add(Sighting(article_id=row.id, source_id=self.source(source)))
        if opened:
            self.session.add(Event(id=event_id, title=title, first_seen=T0, last_seen=T0))
        else:
            stored = self.session.get(Event, event_id)
            assert stored is not None
            stored.article_count += 1
        self.session.flush()
        return EventChange(row.id, event_id, opened, duplicate_of=duplicate_of)

    def sighting(self, article_id: int, source: str) -> EventChange:
        self.session.add(Sighting(article_id=article_id, source_id=self.source(source)))
        self.session.flush()
        article = self.session.get(Article, article_id)
        assert article is not None and article.event_id is not None
        return EventChange(article_id, article.event_id, False, sighting=True)

    def merge(self, gone: int, keep: int, via: EventChange) -> EventChange:
        """Event `gone` absorbed into `keep` when `via` arrived: applied to every table as
        the grouping stage applies it."""
        self.session.flush()
        apply_regroupings(self.session, [Merge(gone, keep)], NOW)
        self.session.expire_all()  # the ORM rows above were changed by SQL statements
        return EventChange(via.article_id, keep, False, merged_event_ids=(gone,))

    def split(self, event_id: int, moved: list[int], via: EventChange) -> EventChange:
        """The `moved` articles of `event_id` split off into an event of their own when
        `via` arrived (its id: the first moved article), as the grouping stage applies it."""
        new_id = min(moved)
        self.session.flush()
        apply_regroupings(self.session, [SplitOff(event_id, new_id, tuple(moved))], NOW)
        self.session.expire_all()
        split = EventSplit(event_id, new_id, tuple(moved))
        return EventChange(via.article_id, via.event_id, False, split=split)


def notifications(session: Session) -> list[Notification]:
    query = select(Notification).order_by(Notification.id)  # type: ignore[arg-type]
    return list(session.execute(query).scalars())


def make_engine(*rules: RuleConfig, now: datetime = NOW) -> AlertEngine:
    return AlertEngine(list(rules), channels(), clock=lambda: now)


# --- corroboration -------------------------------------------------------------------------
def test_corroboration_counts_distinct_sources_within_the_window() -> None:
    h = timedelta(hours=1)
    points = [(1, T0), (1, T0 + h), (2, T0 + 30 * h), (3, T0 + 40 * h), (2, T0 + 41 * h)]
    assert corroboration(points, None) == 3
    assert corroboration(points, timedelta(hours=24)) == 2
    assert corroboration(points, timedelta(hours=5)) == 2
    assert corroboration(points, timedelta(minutes=30)) == 1
    assert corroboration([], timedelta(hours=1)) == 0


# --- once per (rule, event) ----------------------------------------------------------------
def test_one_notification_per_rule_and_event(engine: Engine) -> None:
    alerts = make_engine(rule(min_sources=2, channels=["ops", "desk"]))
    with Session(engine) as session:
        w = World(session)
        first = w.article("wire-a")
        assert alerts.on_changes(session, [first]) == []
        assert notifications(session) == []  # one source is not corroboration
        # Not the query: other news in the same event does not count.
        assert alerts.on_changes(session, [w.article("x", "Sports", event=first.event_id)]) == []
        fired = alerts.on_changes(session, [w.article("paper-b", event=first.event_id)])
        assert [(f.rule, f.event_id, f.sources) for f in fired] == [("dprk", first.event_id, 2)]
        # More reports, a near-duplicate from a known source, a third source: no more messages.
        for change in (
            w.article("wire-a", event=first.event_id, duplicate_of=first.article_id),
            w.article("agency-c", event=first.event_id),
            w.article("paper-b", event=first.event_id),
        ):
            assert alerts.on_changes(session, [change]) == []
        sent = notifications(session)
        assert [(n.channel, n.revision, n.idempotency_key) for n in sent] == [
            ("ops", 1, f"dprk:{first.event_id}:1"),
            ("desk", 1, f"dprk:{first.event_id}:1"),
        ]
        payload = sent[0].payload
        assert payload["rule"] == "dprk" and payload["event_id"] == first.event_id
        assert payload["title"] == HIT and payload["sources"] == ["paper-b", "wire-a"]
        assert payload["why"]["sources_in_window"] == 2
        assert payload["why"]["matched_terms"] == [
            '"defence minister"',
            '"north korea"',
            "belousov",
        ]
        assert {a["url"] for a in payload["articles"]} == {
            "http://wire-a.example/1",
            "http://paper-b.example/3",
        }
        state = session.get(AlertState, ("dprk", first.event_id))
        assert state is not None and state.status == "notified" and state.revision == 1


def test_window_is_measured_on_publication_time(engine: Engine) -> None:
    """Replayed history: reports published 30 h apart are not corroboration within 24 h,
    however close together they are stored."""
    alerts = make_engine(rule(min_sources=2, window=timedelta(hours=24)))
    with Session(engine) as session:
        w = World(session)
        first = w.article("wire-a", published=T0)
        alerts.on_changes(session, [first])
        late = w.article("paper-b", event=first.event_id, published=T0 + timedelta(hours=30))
        assert alerts.on_changes(session, [late]) == []
        close = w.article("agency-c", event=first.event_id, published=T0 + timedelta(hours=40))
        fired = alerts.on_changes(session, [close])
        assert [f.sources for f in fired] == [2]
        # A publication time in the future is not trusted: the first-seen time counts.
        future = w.article("agency-d", published=NOW + timedelta(days=30))
        alerts.on_changes(session, [future])
        (stored,) = matches_of_articles(session, [future.article_id])
        assert stored.at == NOW and list(stored.rules) == ["dprk"]


def test_source_include_and_exclude_lists(engine: Engine) -> None:
    only = rule(name="only", min_sources=2, sources=["wire-a", "paper-b"])
    without = rule(name="without", min_sources=2, exclude_sources=["tabloid"])
    alerts = make_engine(only, without)
    with Session(engine) as session:
        w = World(session)
        first = w.article("wire-a")
        alerts.on_changes(session, [first])
        assert alerts.on_changes(session, [w.article("tabloid", event=first.event_id)]) == []
        fired = alerts.on_changes(session, [w.article("agency-c", event=first.event_id)])
        assert [f.rule for f in fired] == ["without"]
        fired = alerts.on_changes(session, [w.article("paper-b", event=first.event_id)])
        assert [f.rule for f in fired] == ["only"]


def test_a_known_article_seen_at_another_source_counts(engine: Engine) -> None:
    alerts = make_engine(rule(min_sources=2))
    with Session(engine) as session:
        w = World(session)
        first = w.article("wire-a")
        alerts.on_changes(session, [first])
        fired = alerts.on_changes(session, [w.sighting(first.article_id, "paper-b")])
        assert [(f.event_id, f.sources) for f in fired] == [(first.event_id, 2)]


def test_updates_follow_each_further_threshold(engine: Engine) -> None:
    alerts = make_engine(rule(min_sources=2, updates=True))
    with Session(engine) as session:
        w = World(session)
        first = w.article("s1")
        alerts.on_changes(session, [first])
        fired_at = {}
        for i in range(2, 10):
            fired = alerts.on_changes(session, [w.article(f"s{i}", event=first.event_id)])
            if fired:
                fired_at[i] = fired[0].sources
            # Copies from a source already counted never trigger anything.
            copy = w.article("s1", event=first.event_id, duplicate_of=first.article_id)
            assert alerts.on_changes(session, [copy]) == []
        assert fired_at == {2: 2, 4: 4, 8: 8}
        sent = notifications(session)
        assert [n.revision for n in sent] == [1, 2, 3]
        assert [n.payload["kind"] for n in sent] == ["event", "update", "update"]


def test_follow_up_waits_for_repeat_interval(engine: Engine) -> None:
    spaced = rule(min_sources=1, updates=True, repeat_interval=timedelta(hours=1))
    with Session(engine) as session:
        w = World(session)
        first = w.article("s1")
        make_engine(spaced).on_changes(session, [first])
        later = make_engine(spaced, now=NOW + timedelta(minutes=10))
        assert len(later.on_changes(session, [w.article("s2", event=first.event_id)])) == 1
        due = [n.not_before.replace(tzinfo=UTC) for n in notifications(session)]
        assert due == [NOW, NOW + timedelta(hours=1)]


def test_payload_lists_recent_articles_and_every_source(engine: Engine) -> None:
    alerts = make_engine(rule(min_sources=25))
    with Session(engine) as session:
        w = World(session)
        first = w.article("s00")
        changes = [first] + [w.article(f"s{i:02}", event=first.event_id) for i in range(1, 25)]
        assert len(alerts.on_changes(session, changes)) == 1
        payload = notifications(session)[0].payload
        assert len(payload["articles"]) == 20  # the latest 20 matching articles
        assert payload["sources"] == [f"s{i:02}" for i in range(25)]
        assert payload["why"]["sources_in_window"] == 25


def test_no_updates_by_default(engine: Engine) -> None:
    alerts = make_engine(rule(min_sources=1))
    with Session(engine) as session:
        w = World(session)
        first = w.article("s1")
        assert len(alerts.on_changes(session, [first])) == 1
        for i in range(2, 6):
            assert alerts.on_changes(session, [w.article(f"s{i}", event=first.event_id)]) == []
        assert len(notifications(session)) == 1


# --- merged events -------------------------------------------------------------------------
def test_merged_event_keeps_the_absorbed_events_history(engine: Engine) -> None:
    alerts = make_engine(rule(min_sources=2))
    with Session(engine) as session:
        w = World(session)
        # Event A fires; event B (one source) does not.
        a = w.article("s1")
        alerts.on_changes(session, [a])
        assert len(alerts.on_changes(session, [w.article("s2", event=a.event_id)])) == 1
        b = w.article("s3")
        assert alerts.on_changes(session, [b]) == []
        # A is absorbed into B: the survivor already notified under A's id, so nothing new.
        joined = w.article("s4", event=b.event_id)
        assert alerts.on_changes(session, [w.merge(a.event_id, b.event_id, joined)]) == []
        assert len(notifications(session)) == 1
        states = session.execute(select(AlertState)).scalars().all()
        assert [(s.rule, s.event_id) for s in states] == [("dprk", b.event_id)]
        # The four matching articles' matches are the survivor's now.
        found = matches_of_events(session, [a.event_id, b.event_id])
        assert {e: [list(m.rules) for m in ms] for e, ms in found.items()} == {
            b.event_id: [["dprk"]] * 4
        }


def test_merge_can_complete_corroboration(engine: Engine) -> None:
    alerts = make_engine(rule(min_sources=2))
    with Session(engine) as session:
        w = World(session)
        a, b = w.article("s1"), w.article("s2")
        assert alerts.on_changes(session, [a, b]) == []
        via = w.article("s1", "Unrelated weather", event=a.event_id)
        fired = alerts.on_changes(session, [w.merge(b.event_id, a.event_id, via)])
        assert [(f.event_id, f.sources) for f in fired] == [(a.event_id, 2)]


def test_a_part_split_off_is_a_new_event_to_the_rules(engine: Engine) -> None:
    alerts = make_engine(rule(min_sources=2))
    with Session(engine) as session:
        w = World(session)
        a = w.article("s1")
        assert len(alerts.on_changes(session, [a, w.article("s2", event=a.event_id)])) == 1
        # Two more outlets' reports join: the event was notified already.
        c, d = w.article("s3", event=a.event_id), w.article("s4", event=a.event_id)
        assert alerts.on_changes(session, [c, d]) == []
        # They prove to be another event of the same kind and split off: it is notified
        # on its own, with its own sources; the first event's history stays with it.
        fired = alerts.on_changes(session, [w.split(a.event_id, [c.article_id, d.article_id], d)])
        assert [(f.event_id, f.sources) for f in fired] == [(c.article_id, 2)]
        assert [n.event_id for n in notifications(session)] == [a.event_id, c.article_id]
        moved = matches_of_articles(session, [c.article_id, d.article_id])
        assert {m.event_id for m in moved} == {c.article_id}
        # Once notified, the part split off is not notified again.
        e = w.article("s5", event=c.article_id)
        assert alerts.on_changes(session, [e]) == []


# --- silences --------------------------------------------------------------------------------
def test_silence_suppresses_and_records(engine: Engine) -> None:
    quiet, loud = rule(name="quiet"), rule(name="loud")
    alerts = make_engine(quiet, loud)
    with Session(engine) as session:
        session.add(Silence(rule="quiet", until=NOW + timedelta(hours=8), reason="drill"))
        session.add(Silence(rule="loud", until=NOW - timedelta(minutes=1)))  # expired
        w = World(session)
        fired = alerts.on_changes(session, [w.article("s1")])
        assert [f.rule for f in fired] == ["loud"]
        assert [n.rule for n in notifications(session)] == ["loud"]
        states = {s.rule: s.status for s in session.execute(select(AlertState)).scalars()}
        assert states == {"quiet": "silenced", "loud": "notified"}


def test_silence_of_every_rule(engine: Engine) -> None:
    alerts = make_engine(rule(name="a"), rule(name="b"))
    with Session(engine) as session:
        session.add(Silence(rule=None, until=NOW + timedelta(hours=1)))
        w = World(session)
        assert alerts.on_changes(session, [w.article("s1")]) == []
        assert notifications(session) == []


def test_after_a_silence_the_next_change_notifies(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Silence(rule="dprk", until=NOW + timedelta(hours=1)))
        w = World(session)
        first = w.article("s1")
        assert make_engine(rule()).on_changes(session, [first]) == []
        later = make_engine(rule(), now=NOW + timedelta(hours=2))
        fired = later.on_changes(session, [w.article("s2", event=first.event_id)])
        assert [f.event_id for f in fired] == [first.event_id]
        assert [n.revision for n in notifications(session)] == [1]


def test_silence_functions(engine: Engine) -> None:
    with Session(engine) as session:
        drill = add_silence(session, "quiet", timedelta(hours=8), "drill", now=NOW)
        every = add_silence(session, None, timedelta(minutes=30), now=NOW)
        old = add_silence(session, "quiet", timedelta(minutes=5), now=NOW - timedelta(hours=1))
        with pytest.raises(ValueError, match="longer than 0"):
            add_silence(session, "quiet", timedelta(0))
        assert [s.id for s in list_silences(session, now=NOW)] == [every.id, drill.id]
        assert [s.id for s in list_silences(session, expired=True, now=NOW)] == [
            old.id,
            every.id,
            drill.id,
        ]
        assert silenced(session, "anything", NOW)  # the silence of every rule
        assert not silenced(session, "anything", NOW + timedelta(hours=1))
        assert silenced(session, "quiet", NOW + timedelta(hours=1))
        assert remove_silence(session, drill.id) and not remove_silence(session, drill.id)
        assert not silenced(session, "quiet", NOW + timedelta(hours=1))
        # What a silence suppressed is counted per rule.
        w = World(session)
        make_engine(rule(name="quiet")).on_changes(session, [w.article("s1")])
        assert suppressed_counts(session) == {"quiet": 1}


# --- durability -----------------------------------------------------------------------------
def test_state_survives_a_restart_and_a_rollback_leaves_nothing(engine: Engine) -> None:
    with Session(engine) as session:
        w = World(session)
        first = w.article("s1")
        make_engine(rule(min_sources=2)).on_changes(session, [first])
        session.commit()
        event_id = first.event_id
    with Session(engine) as session:
        w = World(session)
        w.sources = {"s1": 1}
        change = w.article("s2", event=event_id)
        assert len(make_engine(rule(min_sources=2)).on_changes(session, [change])) == 1
        session.rollback()  # the ingest transaction failed: its notification goes with it
    with Session(engine) as session:
        assert notifications(session) == []
        w = World(session)
        w.sources = {"s1": 1}
        change = w.article("s2", event=event_id)
        assert len(make_engine(rule(min_sources=2)).on_changes(session, [change])) == 1
        session.commit()
    with Session(engine) as session:  # a restarted process: a fresh engine, same store
        w = World(session)
        w.sources = {"s1": 1, "s2": 2}
        change = w.article("s3", event=event_id)
        assert make_engine(rule(min_sources=2)).on_changes(session, [change]) == []
        assert len(notifications(session)) == 1


def test_matches_count_in_metrics(engine: Engine) -> None:
    before = RULE_MATCHES.labels("counted")._value.get()
    with Session(engine) as session:
        w = World(session)
        make_engine(rule(name="counted")).on_changes(session, [w.article("s1")])
    assert RULE_MATCHES.labels("counted")._value.get() == before + 1


# --- noise control -------------------------------------------------------------------------
def test_quiet_hours_defer_into_one_digest(engine: Engine) -> None:
    night = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
    alerts = make_engine(rule(quiet_hours="22:00-07:00"), now=night)
    with Session(engine) as session:
        w = World(session)
        alerts.on_changes(session, [w.article("s1"), w.article("s2")])
        sent = notifications(session)
        assert len(sent) == 2  # deferred, not dropped
        morning = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
        assert {n.not_before.replace(tzinfo=UTC) for n in sent} == {morning}
        assert {n.batch_key for n in sent} == {f"dprk:quiet:{morning.isoformat()}"}


def test_group_wait_batches_and_digest_periods(engine: Engine) -> None:
    at = datetime(2026, 11, 22, 10, 17, tzinfo=UTC)
    clock = [at]
    waiting = rule(name="wait", group_wait=timedelta(minutes=5))
    hourly = rule(name="hourly", digest="hourly")
    alerts = AlertEngine([waiting, hourly], channels(), clock=lambda: clock[0])
    with Session(engine) as session:
        w = World(session)
        alerts.on_changes(session, [w.article("s1"), w.article("s2")])
        rows = {
            (n.rule, n.batch_key, n.not_before.replace(tzinfo=UTC)) for n in notifications(session)
        }
        # The first match opens the group: it collects for the whole 5 minutes from 10:17.
        assert rows == {
            (
                "wait",
                "wait:wait:2026-11-22T10:17:00+00:00",
                datetime(2026, 11, 22, 10, 22, tzinfo=UTC),
            ),
            (
                "hourly",
                "hourly:digest:2026-11-22T10:00:00+00:00",
                datetime(2026, 11, 22, 11, tzinfo=UTC),
            ),
        }
        # A match of another event at 10:21 joins the open group; one at 10:23 opens the next.
        for minute in (21, 23):
            clock[0] = at.replace(minute=minute)
            alerts.on_changes(session, [w.article(f"late{minute}")])
        waits = sorted(
            (n.not_before.replace(tzinfo=UTC), n.batch_key)
            for n in notifications(session)
            if n.rule == "wait"
        )
        # (two events at 10:17, one at 10:21, one at 10:23)
        assert [key for _, key in waits] == 3 * ["wait:wait:2026-11-22T10:17:00+00:00"] + [
            "wait:wait:2026-11-22T10:23:00+00:00"
        ]
        assert {when for when, _ in waits[:3]} == {datetime(2026, 11, 22, 10, 22, tzinfo=UTC)}
        assert waits[3][0] == datetime(2026, 11, 22, 10, 28, tzinfo=UTC)


def _t(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("span", "now", "end"),
    [
        ("22:00-07:00", _t(22, 23), _t(23, 7)),
        ("22:00-07:00", _t(22, 6, 59), _t(22, 7)),
        ("22:00-07:00", _t(22, 7), None),
        ("22:00-07:00", _t(22, 12), None),
        ("12:00-14:00", _t(22, 13), _t(22, 14)),
        ("12:00-14:00", _t(22, 14), None),
    ],
)
def test_quiet_end(span: str, now: datetime, end: datetime | None) -> None:
    start, stop = (datetime.strptime(p, "%H:%M").time() for p in span.split("-"))
    assert quiet_end(now, (start, stop)) == end


BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("now", "end"),
    [
        # Winter (UTC+1): 22:00-07:00 Berlin is 21:00-06:00 UTC.
        (_t(22, 21, 30), _t(23, 6)),
        (_t(22, 20, 59), None),
        (_t(23, 5, 59), _t(23, 6)),
        (_t(23, 6), None),
    ],
)
def test_quiet_end_on_a_local_clock(now: datetime, end: datetime | None) -> None:
    assert quiet_end(now, (time(22), time(7)), BERLIN) == end


def test_quiet_end_across_a_change_of_daylight_saving() -> None:
    # Berlin leaves summer time at 03:00 on 2026-10-25: a night that starts at 22:00 CEST
    # (20:00 UTC) ends at 07:00 CET (06:00 UTC), ten hours later, not nine.
    start = datetime(2026, 10, 24, 20, 0, tzinfo=UTC)
    assert quiet_end(start, (time(22), time(7)), BERLIN) == datetime(2026, 10, 25, 6, 0, tzinfo=UTC)
    assert quiet_end(start - timedelta(minutes=1), (time(22), time(7)), BERLIN) is None


def test_schedule_digest_and_quiet_hours_in_a_time_zone() -> None:
    now = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)  # 00:30 on the 23rd in Berlin
    berlin = ChannelConfig(
        name="b", type="email", to=["a@b.c"], digest="daily", timezone="Europe/Berlin"
    )
    # The local day 23 Nov runs 23:00 UTC on the 22nd to 23:00 UTC on the 23rd.
    assert schedule(rule(), berlin, now) == (
        datetime(2026, 11, 23, 23, tzinfo=UTC),
        "channel:b:digest:2026-11-22T23:00:00+00:00",
    )
    # A rule's own zone wins over the channel's; India is UTC+5:30, so its hours start at :30.
    india = rule(digest="hourly", timezone="Asia/Kolkata")
    assert schedule(india, berlin, now) == (
        datetime(2026, 11, 23, 0, 30, tzinfo=UTC),
        "dprk:digest:2026-11-22T23:30:00+00:00",
    )
    # Without a zone of its own the rule's quiet hours follow the channel's clock.
    quiet = ChannelConfig(name="q", type="email", to=["a@b.c"], timezone="Europe/Berlin")
    when, key = schedule(rule(quiet_hours="22:00-07:00"), quiet, now)
    assert when == datetime(2026, 11, 23, 6, tzinfo=UTC) and key is not None
    assert schedule(rule(quiet_hours="22:00-07:00"), quiet, now + timedelta(hours=7))[1] is None


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Berln'"):
        ChannelConfig(name="b", type="email", to=["a@b.c"], timezone="Europe/Berln")
    with pytest.raises(ValueError, match="timezone"):
        rule(timezone="../etc/passwd")


def test_schedule_repeat_interval_and_channel_defaults() -> None:
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    ops = ChannelConfig(
        name="ops", type="webhook", url="http://x/", group_wait=timedelta(minutes=1)
    )
    spaced = rule(repeat_interval=timedelta(hours=1))
    # A first notification goes at once (the channel's group_wait batches it).
    assert schedule(spaced, ops, now) == (
        now + timedelta(minutes=1),
        "dprk:wait:" + now.isoformat(),
    )
    # A follow-up 10 minutes after the last one waits for the interval.
    last = now - timedelta(minutes=10)
    assert schedule(spaced, ops, now, last)[0] == last + timedelta(hours=1)
    # The rule's own setting wins over the channel's.
    assert schedule(rule(group_wait=timedelta(0)), ops, now) == (now, None)
    # A channel's digest or quiet hours gather every rule's notifications into one message.
    daily = ChannelConfig(name="d", type="email", to=["a@b.c"], digest="daily")
    assert schedule(rule(), daily, now) == (
        datetime(2026, 11, 23, tzinfo=UTC),
        "channel:d:digest:2026-11-22T00:00:00+00:00",
    )
    assert schedule(rule(digest="hourly"), daily, now)[1] == "dprk:digest:" + now.isoformat()
    night = ChannelConfig(name="n", type="email", to=["a@b.c"], quiet_hours="09:00-11:00")
    assert schedule(rule(name="other"), night, now) == (
        datetime(2026, 11, 22, 11, tzinfo=UTC),
        "channel:n:quiet:2026-11-22T11:00:00+00:00",
    )


# --- dry run ----------------------------------------------------------------------------------
def test_dry_run_lists_firing_events_and_writes_nothing(engine: Engine) -> None:
    with Session(engine) as session:
        w = World(session)
        first = w.article("s1")
        w.article("s2", event=first.event_id)
        w.article("s3", "Unrelated weather")
        alone = w.article("s4")
        session.commit()
        firings = make_engine(rule(min_sources=2)).dry_run(session, None)
        assert [(f.event_id, f.sources) for f in firings] == [(first.event_id, 2)]
        assert "belousov" in firings[0].terms
        # --since is news time (publication), not the time the history was stored.
        loose = make_engine(rule(min_sources=1)).dry_run(session, T0 - timedelta(hours=1))
        assert [f.event_id for f in loose] == [first.event_id, alone.event_id]
        assert make_engine(rule()).dry_run(session, T0 + timedelta(hours=1)) == []
        assert notifications(session) == []
        assert session.execute(select(ArticleMatch)).first() is None
        assert session.execute(select(AlertState)).first() is None


def test_query_compiles_once_per_rule() -> None:
    alerts = make_engine(rule(name="a"), rule(name="b", enabled=False))
    assert list(alerts.rules) == ["a"]
    assert alerts.ruleset.rules[0].query == parse(QUERY)


# --- fragments of one story: group_wait looks again before sending -----------------------
def _sent(session: Session, *rows: Notification) -> None:
    """What the delivery worker records once a notification went out."""
    for row in rows:
        row.status, row.attempts = "sent", 1
    session.flush()


def test_fragments_merged_during_group_wait_go_out_as_one_notification(engine: Engine) -> None:
    """Issue 14, item 3: three events (67, 166, 704 in production) each fired, were merged
    during the rule's group_wait, and still went out as three notifications."""
    waiting = rule(min_sources=1, group_wait=timedelta(minutes=5))
    # The rule decided ten minutes ago: its group is due when the worker looks.
    decided = utcnow() - timedelta(minutes=10)
    with webhook_receiver() as receiver:
        ops = ChannelConfig(name="ops", type="webhook", url=receiver.url(), secret=SECRET)
        public = Settings(_env_file=None, NEWSWATCH_PUBLIC_URL="https://news.example.org")  # type: ignore[call-arg]
        alerts = AlertEngine([waiting], [ops], public, clock=lambda: decided)
        with Session(engine) as session:
            w = World(session)
            a, b, c = w.article("s1"), w.article("s2"), w.article("s3")
            fired = alerts.on_changes(session, [a, b, c])
            assert [f.event_id for f in fired] == [a.event_id, b.event_id, c.event_id]
            assert len({n.batch_key for n in notifications(session)}) == 1  # one wait group
            # Within the wait, reports bridging them merge the three into one event.
            m1 = w.merge(b.event_id, a.event_id, w.article("s4", event=a.event_id))
            m2 = w.merge(c.event_id, a.event_id, w.article("s5", event=a.event_id))
            assert alerts.on_changes(session, [m1, m2]) == []
            session.commit()
        worker = DeliveryWorker.from_config(
            engine,
            FileConfig.model_construct(channels=[ops], rules=[], sources=[]),
            Settings(_env_file=None),  # type: ignore[call-arg]
        )
        result = asyncio.run(worker.drain(timeout=30))
    assert result.sent == 1
    (message,) = receiver.accepted
    # One notification, about the surviving event, with every fragment's sources.
    assert message["type"] == "notification"
    assert (message["event_id"], message["revision"], message["kind"]) == (a.event_id, 1, "event")
    assert message["idempotency_key"] == f"dprk:{a.event_id}:1"
    assert message["url"] == f"https://news.example.org/events/{a.event_id}"
    assert message["sources"] == ["s1", "s2", "s3", "s4", "s5"]
    assert message["why"]["matching_articles"] == 5


@pytest.mark.parametrize("survivor", ["notified", "pending"])
@pytest.mark.parametrize("updates", [False, True])
def test_a_merge_after_a_notification_sends_no_second_new_alert(
    engine: Engine, survivor: str, updates: bool
) -> None:
    alerts = make_engine(rule(min_sources=1, updates=updates))
    with Session(engine) as session:
        w = World(session)
        a = w.article("s1")
        alerts.on_changes(session, [a])
        _sent(session, *notifications(session))  # event A's notification went out
        b = w.article("s2")
        alerts.on_changes(session, [b])  # event B's is queued, not sent yet
        assert [n.status for n in notifications(session)] == ["sent", "pending"]
        # They prove one story; either survives.
        keep, gone = (a, b) if survivor == "notified" else (b, a)
        via = w.article("s3", "Unrelated weather", event=keep.event_id)
        fired = alerts.on_changes(session, [w.merge(gone.event_id, keep.event_id, via)])
        rows = [(n.event_id, n.revision, n.payload["kind"]) for n in notifications(session)]
        # The story was announced: B's "new" alert is not sent. With updates the survivor,
        # now at 2 sources (2x min_sources), gets an update.
        assert rows[0] == (a.event_id, 1, "event")
        if updates:
            assert [(f.event_id, f.sources) for f in fired] == [(keep.event_id, 2)]
            assert rows[1:] == [(keep.event_id, 2, "update")]
        else:
            assert fired == [] and rows[1:] == []
        state = session.get(AlertState, ("dprk", keep.event_id))
        assert state is not None and state.revision == (2 if updates else 1)


def test_a_silenced_survivor_does_not_announce_a_story_notified_under_the_other_id(
    engine: Engine,
) -> None:
    alerts = make_engine(rule(min_sources=1))
    with Session(engine) as session:
        w = World(session)
        silence = add_silence(session, "dprk", timedelta(hours=1), now=NOW)
        b = w.article("s2")
        alerts.on_changes(session, [b])  # silenced: recorded, not sent
        remove_silence(session, silence.id)
        a = w.article("s1")
        alerts.on_changes(session, [a])  # notified, and sent
        _sent(session, *notifications(session))
        assert [n.event_id for n in notifications(session)] == [a.event_id]
        # A (notified) is absorbed into B (silenced): B inherits the notification.
        via = w.article("s3", event=b.event_id)
        assert alerts.on_changes(session, [w.merge(a.event_id, b.event_id, via)]) == []
        assert [n.event_id for n in notifications(session)] == [a.event_id]
        state = session.get(AlertState, ("dprk", b.event_id))
        assert state is not None and (state.status, state.revision) == ("notified", 1)


def test_merged_fragments_keep_the_first_due_notification(engine: Engine) -> None:
    clock = [datetime(2026, 11, 22, 10, 17, tzinfo=UTC)]
    alerts = AlertEngine(
        [rule(min_sources=1, group_wait=timedelta(minutes=5))],
        channels(),
        clock=lambda: clock[0],
    )
    with Session(engine) as session:
        w = World(session)
        a = w.article("s1")
        alerts.on_changes(session, [a])  # its group goes out at 10:22
        clock[0] = clock[0].replace(minute=23)
        b = w.article("s2")
        alerts.on_changes(session, [b])  # the next group, at 10:28
        clock[0] = clock[0].replace(minute=24)
        via = w.article("s3", event=b.event_id)
        alerts.on_changes(session, [w.merge(a.event_id, b.event_id, via)])
        (row,) = notifications(session)
        # The survivor is told of at A's time, under its own id and key, with all sources.
        assert (row.event_id, row.idempotency_key) == (b.event_id, f"dprk:{b.event_id}:1")
        assert row.not_before.replace(tzinfo=UTC) == datetime(2026, 11, 22, 10, 22, tzinfo=UTC)
        assert row.payload["event_id"] == b.event_id
        assert row.payload["idempotency_key"] == row.idempotency_key
        assert row.payload["sources"] == ["s1", "s2", "s3"]
        state = session.get(AlertState, ("dprk", b.event_id))
        assert state is not None and (state.revision, state.sources_notified) == (1, 3)


def test_payload_links_the_event_page_under_the_public_url(engine: Engine) -> None:
    public = Settings(_env_file=None, NEWSWATCH_PUBLIC_URL="https://news.example.org/watch/")  # type: ignore[call-arg]
    linked = AlertEngine([rule(name="linked")], channels(), public, clock=lambda: NOW)
    plain = AlertEngine([rule(name="plain")], channels(), clock=lambda: NOW)
    with Session(engine) as session:
        w = World(session)
        a = w.article("s1")
        linked.on_changes(session, [a])
        plain.on_changes(session, [a])
        urls = {n.rule: n.payload["url"] for n in notifications(session)}
    assert urls == {"linked": f"https://news.example.org/watch/events/{a.event_id}", "plain": None}
