"""Migration 0015 (decision 0225): the rows of rule_matches (one per rule, article and
carrying source) become one article_matches row an article, on SQLite and Postgres; every
reader of matches works on the rows carried over, and a downgrade gives the rows back."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import command
from sqlalchemy import JSON, Engine, Integer, Text, column, insert, inspect, select, table
from sqlmodel import Session

from newswatch.alerts.config import ChannelConfig, RuleConfig
from newswatch.alerts.stage import AlertStage
from newswatch.grouping.changes import EventChange
from newswatch.store.alert_models import ArticleMatch
from newswatch.store.alerts import (
    event_matched,
    matched_rule_names,
    matches_of_articles,
    matches_of_events,
)
from newswatch.store.columns import UTCDateTime, as_utc
from newswatch.store.db import _alembic_config, make_engine, upgrade
from newswatch.store.models import Article, Event, Sighting, Source, table_of

SOURCES = table_of(Source)
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
# (rule, article, source, words): what 0014's rule_matches held, a row per carrier.
OLD_ROWS = [
    ("quake", 1, "wire", ["quake"]),
    ("quake", 1, "paper", ["quake"]),
    ("port", 1, "wire", ["port", '"north korea"']),
    ("quake", 2, "paper", ["quake"]),
    ('o\'hara "q"', 3, "wire", []),
]
EVENT_OF = {1: 1, 2: 1, 3: 3}
CARRIERS = {1: ["wire", "paper"], 2: ["paper"], 3: ["wire"]}


# rule_matches as 0014 left it (the model is gone).
RULE_MATCHES = table(
    "rule_matches",
    column("rule", Text),
    column("event_id", Integer),
    column("article_id", Integer),
    column("source_id", Integer),
    column("at", UTCDateTime),
    column("terms", JSON),
)


def _store_at_0014(store_url: str) -> Engine:
    """A store at revision 0014 with three articles in two events and OLD_ROWS (sources,
    articles, events and sightings are as 0014 left them)."""
    engine = make_engine(store_url)
    upgrade(engine, "0014")
    with Session(engine) as session:
        sources = {
            name: Source(name=name, url=f"http://{name}.example/feed", configured_url="x")
            for name in ("wire", "paper")
        }
        session.add_all(sources.values())
        for article_id, event_id in EVENT_OF.items():
            if article_id == event_id:
                session.add(Event(id=event_id, title="e", first_seen=T0, last_seen=T0))
                session.flush()
            session.add(
                Article(
                    id=article_id,
                    title=f"quake {article_id}",
                    published=T0 + timedelta(minutes=article_id),
                    first_seen=T0 + timedelta(hours=2),
                    content_hash=hashlib.sha1(str(article_id).encode()).hexdigest(),
                    event_id=event_id,
                )
            )
            session.flush()
            for name in CARRIERS[article_id]:
                session.add(Sighting(article_id=article_id, source_id=sources[name].id))
        session.flush()
        rows = [
            {
                "rule": rule,
                "event_id": EVENT_OF[article_id],
                "article_id": article_id,
                "source_id": sources[source].id,
                "at": T0 + timedelta(minutes=article_id),
                "terms": words,
            }
            for rule, article_id, source, words in OLD_ROWS
        ]
        session.execute(insert(RULE_MATCHES), rows)
        session.commit()
    return engine


def _expected() -> dict[int, dict[str, list[str]]]:
    out: dict[int, dict[str, list[str]]] = {}
    for rule, article_id, _source, words in OLD_ROWS:
        out.setdefault(article_id, {})[rule] = words
    return out


def test_upgrade_carries_every_match_over_and_the_readers_see_them(store_url: str) -> None:
    engine = _store_at_0014(store_url)
    upgrade(engine)
    assert "rule_matches" not in inspect(engine).get_table_names()
    with Session(engine) as session:
        rows = session.execute(select(ArticleMatch)).scalars().all()
        assert {r.article_id: r.rules for r in rows} == _expected()
        # The events list's rule filter and its list of rules.
        events = table_of(Event)
        for rule, expected in [("port", {1}), ("quake", {1}), ('o\'hara "q"', {3}), ("q", set())]:
            query = select(events.c.id).where(event_matched(events.c.id, rule))
            assert set(session.execute(query).scalars()) == expected, rule
        assert matched_rule_names(session) == sorted({r for r, *_ in OLD_ROWS})
        found = matches_of_events(session, [1, 3])
        assert {e: [set(m.rules) for m in ms] for e, ms in found.items()} == {
            1: [{"quake", "port"}, {"quake"}],
            3: [{'o\'hara "q"'}],
        }
        # Judging's reader: the event and the time from the article, carriers from sightings.
        (first, second) = matches_of_events(session, [1])[1]
        assert (first.article_id, first.at) == (1, T0 + timedelta(minutes=1))
        assert first.sources == [(1, "wire"), (2, "paper")]
        assert second.sources == [(2, "paper")]
        assert [m.article_id for m in matches_of_articles(session, [3, 2])] == [2, 3]
    engine.dispose()


def test_the_stage_judges_carried_over_matches_with_new_ones(store_url: str) -> None:
    """Event 1 has two sources matching "quake" before the upgrade; a third source's report
    after it makes three: the rule (min_sources 3) fires, counting the old ones."""
    engine = _store_at_0014(store_url)
    upgrade(engine)
    ops = ChannelConfig(name="ops", type="webhook", url="http://127.0.0.1:9/hook")
    rule = RuleConfig(name="quake", query="quake", channels=["ops"], min_sources=3)
    stage = AlertStage([rule], [ops], clock=lambda: T0 + timedelta(hours=3))
    with Session(engine) as session:
        agency = Source(name="agency", url="http://agency.example/feed", configured_url="x")
        session.add(agency)
        session.flush()
        article = Article(
            id=4,  # (the ids before were given: Postgres's sequence has not moved)
            title="quake 4",
            published=T0 + timedelta(minutes=4),
            first_seen=T0 + timedelta(hours=2),
            content_hash="4",
            event_id=1,
        )
        session.add(article)
        session.flush()
        assert article.id is not None and agency.id is not None
        session.add(Sighting(article_id=article.id, source_id=agency.id))
        session.flush()
        fired = stage.on_changes(session, [EventChange(article.id, 1, opened=False)])
        assert [(f.event_id, f.sources, f.terms) for f in fired] == [(1, 3, ["quake"])]
        stored = session.get(ArticleMatch, article.id)
        assert stored is not None and stored.rules == {"quake": ["quake"]}
        session.commit()
    engine.dispose()


def test_downgrade_gives_a_row_per_rule_article_and_carrier_back(store_url: str) -> None:
    engine = _store_at_0014(store_url)
    with engine.connect() as conn:
        before = _old_rows(conn)
    upgrade(engine)
    command.downgrade(_alembic_config(engine), "0014")
    assert "article_matches" not in inspect(engine).get_table_names()
    # Every carrier of a matching article comes back, also one a rule's `sources` list had
    # left out ("port" had no row for the paper's copy of article 1).
    words = {(rule, article_id): terms for rule, article_id, _s, terms in OLD_ROWS}
    at = {row[2]: row[4] for row in before}
    expected = {
        (rule, EVENT_OF[article_id], article_id, name, at[article_id], tuple(terms))
        for (rule, article_id), terms in words.items()
        for name in CARRIERS[article_id]
    }
    assert before < expected
    with engine.connect() as conn:
        assert _old_rows(conn) == expected
    upgrade(engine)  # and up again: the same rows
    with Session(engine) as session:
        rows = session.execute(select(ArticleMatch)).scalars().all()
        assert {r.article_id: r.rules for r in rows} == _expected()
    engine.dispose()


def _old_rows(conn: Any) -> set[tuple[Any, ...]]:
    query = select(
        RULE_MATCHES.c.rule,
        RULE_MATCHES.c.event_id,
        RULE_MATCHES.c.article_id,
        SOURCES.c.name,
        RULE_MATCHES.c.at,
        RULE_MATCHES.c.terms,
    ).join(SOURCES, SOURCES.c.id == RULE_MATCHES.c.source_id)
    out = set()
    for rule, event_id, article_id, name, at, terms in conn.execute(query):
        out.add((rule, event_id, article_id, name, as_utc(at), tuple(terms)))
    assert out, "no rows: the comparison proves nothing"
    return out
