"""Rule semantics through the pipeline: follow-up thresholds, windows, source filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from newswatch.alerts.config import ChannelConfig, RuleConfig
from newswatch.alerts.judging import corroboration
from newswatch.alerts.policy import quiet_end, schedule
from newswatch.config import FileConfig, Settings, parse_config_text
from newswatch.pipeline import Pipeline
from newswatch.shared_types import ParsedEntry
from newswatch.store.alert_models import AlertState, Notification
from newswatch.store.articles import ensure_source
from newswatch.store.db import session_scope

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
SUMMIT = [
    "Belousov meets North Korean defence minister in Pyongyang",
    "Russian defence chief Belousov holds talks in Pyongyang with DPRK minister",
    "Belousov and DPRK defence minister sign plan of joint exercises in Pyongyang",
    "DPRK minister receives Belousov delegation, Pyongyang talks on cooperation",
    "Pyongyang: Belousov visit ends with pledge on DPRK military cooperation",
]
BODY = (
    "Russian Defence Minister Andrei Belousov held talks in Pyongyang with the defence "
    "minister of the DPRK, North Korea, on military cooperation and joint exercises."
)


def pipeline_for(engine, rule: RuleConfig) -> Pipeline:  # type: ignore[no-untyped-def]
    config = FileConfig(
        channels=[ChannelConfig(name="ops", type="webhook", url="http://127.0.0.1:9/x")],
        rules=[rule],
    )
    return Pipeline(engine, config, Settings(_env_file=None))  # type: ignore[call-arg]


def report(engine, pipeline: Pipeline, n: int, at: datetime) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        source = ensure_source(session, f"outlet-{n}")
        source_id = source.id
    entry = ParsedEntry(
        url=f"https://outlet-{n}.example/summit",
        title=SUMMIT[n % len(SUMMIT)],
        text=BODY + f" Report number {n}.",
        published=at,
    )
    pipeline.ingest(source_id, [entry])  # type: ignore[arg-type]


def notifications(engine) -> list[Notification]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        query = select(Notification).order_by(Notification.id)
        return list(session.execute(query).scalars())


def test_one_notification_per_event_then_follow_ups_at_thresholds(engine):
    rule = RuleConfig(
        name="summit",
        query="Belousov AND (DPRK OR Pyongyang)",
        min_sources=2,
        channels=["ops"],
        updates=True,
    )
    pipeline = pipeline_for(engine, rule)
    for n in range(5):
        report(engine, pipeline, n, T0 + timedelta(minutes=10 * n))
        sent = notifications(engine)
        # 1 source: nothing; 2: the first; 3: no more; 4 (2 x min_sources): a follow-up.
        assert len(sent) == {0: 0, 1: 1, 2: 1, 3: 2, 4: 2}[n], n
    first, follow_up = notifications(engine)
    assert first.event_id == follow_up.event_id
    assert (first.revision, follow_up.revision) == (1, 2)
    assert follow_up.payload["kind"] == "update" and follow_up.payload["source_count"] == 4
    with session_scope(engine) as session:
        state = session.get(AlertState, ("summit", first.event_id))
        assert state is not None and state.sources_notified == 4


def test_window_requires_sources_close_in_time(engine):
    rule = RuleConfig(
        name="summit",
        query="Belousov",
        min_sources=2,
        window=timedelta(hours=24),
        channels=["ops"],
    )
    pipeline = pipeline_for(engine, rule)
    report(engine, pipeline, 0, T0)
    report(engine, pipeline, 1, T0 + timedelta(hours=30))
    assert notifications(engine) == []  # two sources, but 30 h apart
    report(engine, pipeline, 2, T0 + timedelta(hours=40))
    assert len(notifications(engine)) == 1  # 30 h and 40 h are within 24 h


def test_source_filters(engine):
    rule = RuleConfig(
        name="summit",
        query="Belousov",
        min_sources=2,
        channels=["ops"],
        exclude_sources=["outlet-1"],
    )
    pipeline = pipeline_for(engine, rule)
    report(engine, pipeline, 0, T0)
    report(engine, pipeline, 1, T0)
    assert notifications(engine) == []
    report(engine, pipeline, 2, T0)
    assert len(notifications(engine)) == 1


def test_corroboration_counts_distinct_sources_in_the_best_window():
    at = [T0 + timedelta(hours=h) for h in (0, 1, 30, 31, 32)]
    points = list(zip([1, 1, 2, 3, 1], at, strict=True))
    assert corroboration(points, None) == 3
    assert corroboration(points, timedelta(hours=2)) == 3  # sources 2, 3, 1 at 30-32 h
    assert corroboration(points, timedelta(minutes=30)) == 1


def test_schedule_digest_quiet_hours_group_wait_repeat():
    channel = ChannelConfig(name="ops", type="webhook", url="http://127.0.0.1:9/x")
    now = datetime(2026, 11, 22, 23, 17, tzinfo=UTC)

    def rule(**kw: object) -> RuleConfig:
        return RuleConfig(name="r", query="x", channels=["ops"], **kw)  # type: ignore[arg-type]

    assert schedule(rule(), channel, now) == (now, None)
    when, key = schedule(rule(digest="hourly"), channel, now)
    assert when == datetime(2026, 11, 23, 0, 0, tzinfo=UTC) and key == (
        "r:digest:2026-11-22T23:00:00+00:00"
    )
    when, key = schedule(rule(quiet_hours="22:00-07:00"), channel, now)
    assert when == datetime(2026, 11, 23, 7, 0, tzinfo=UTC) and key.startswith("r:quiet:")
    when, key = schedule(rule(group_wait=timedelta(minutes=5)), channel, now)
    assert when == datetime(2026, 11, 22, 23, 22, tzinfo=UTC) and key == (
        "r:wait:2026-11-22T23:17:00+00:00"
    )
    # A group still collecting takes the match; a closed one does not.
    group = (when, key)
    later = now + timedelta(minutes=4)
    assert schedule(rule(group_wait=timedelta(minutes=5)), channel, later, None, group) == group
    after = now + timedelta(minutes=5)
    assert schedule(rule(group_wait=timedelta(minutes=5)), channel, after, None, group) == (
        after + timedelta(minutes=5),
        f"r:wait:{after.isoformat()}",
    )
    last = now - timedelta(minutes=10)
    when, _ = schedule(rule(repeat_interval=timedelta(hours=1)), channel, now, last)
    assert when == last + timedelta(hours=1)
    assert quiet_end(datetime(2026, 11, 22, 12, 0, tzinfo=UTC), (now.time(), now.time())) is None


@pytest.mark.parametrize(
    "rules_yaml, message",
    [
        (
            "  - name: a\n    query: 'x AND'\n    channels: [ops]\n",
            "rules[0].query: col 6: expected a term at the end of the query",
        ),
        (
            "  - name: a\n    query: 'x'\n    channels: [nope]\n",
            "rules[0].channels: no channel named 'nope'",
        ),
        (
            "  - name: a\n    query: 'x'\n    channels: [ops]\n    quiet_hours: '25:00-07:00'\n",
            "rules[0].quiet_hours",
        ),
        ("  - name: a\n    query: 'title:(x'\n    channels: [ops]\n", "rules[0].query: col"),
    ],
)
def test_invalid_rules_name_the_place(rules_yaml: str, message: str):
    text = (
        "channels:\n  - name: ops\n    type: webhook\n    url: http://127.0.0.1:9/x\n"
        "rules:\n" + rules_yaml
    )
    with pytest.raises(Exception) as info:
        parse_config_text(text, "alerts.yaml")
    assert message in str(info.value)
