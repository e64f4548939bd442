"""The time an article counts at is defined once (store/timing.py): the Python function and
the SQL expression agree on SQLite and Postgres, to the microsecond, also for articles dated
in the future and at the edge of the slack; and the stages use it: an event's span and a rule
match's time are the article's time, a future date counting at the first-seen time."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select, text
from sqlmodel import Session

from newswatch.alerts.config import ChannelConfig, RuleConfig
from newswatch.config import FileConfig, Settings
from newswatch.pipeline import Pipeline
from newswatch.shared_types import ParsedEntry
from newswatch.store.alerts import matches_of_articles
from newswatch.store.articles import ensure_source
from newswatch.store.columns import as_utc
from newswatch.store.models import Article
from newswatch.store.timing import FUTURE_SLACK, article_time, article_time_sql

SEEN = datetime(2026, 12, 31, 23, 30, 59, 999_999, tzinfo=UTC)  # the slack crosses a year
US = timedelta(microseconds=1)
PUBLISHED = {
    "none": None,
    "a day before": SEEN - timedelta(days=1),
    "same time": SEEN,
    "at the edge": SEEN + FUTURE_SLACK,
    "just past the edge": SEEN + FUTURE_SLACK + US,
    "just inside the edge": SEEN + FUTURE_SLACK - US,
    "a week ahead": SEEN + timedelta(days=7),
}


def test_python_and_sql_agree(engine: Engine) -> None:
    seen_times = [SEEN, SEEN.replace(microsecond=0), SEEN.replace(second=0, microsecond=500)]
    with Session(engine) as session:
        expected: dict[int, datetime] = {}
        for first_seen in seen_times:
            for label, published in PUBLISHED.items():
                if published is not None:
                    published += first_seen - SEEN
                row = Article(
                    title=label,
                    published=published,
                    first_seen=first_seen,
                    content_hash=hashlib.sha1(f"{label}{first_seen}".encode()).hexdigest(),
                )
                session.add(row)
                session.flush()
                assert row.id is not None
                expected[row.id] = article_time(published, first_seen)
        session.commit()
        query = select(Article.id, article_time_sql(Article.published, Article.first_seen))  # type: ignore[call-overload]
        got = {article_id: as_utc(at) for article_id, at in session.execute(query)}
    assert got == expected
    # The cases tell apart what they should: a future date counts at the first-seen time.
    assert article_time(PUBLISHED["a week ahead"], SEEN) == SEEN
    assert article_time(PUBLISHED["just past the edge"], SEEN) == SEEN
    assert article_time(PUBLISHED["at the edge"], SEEN) == SEEN + FUTURE_SLACK


def test_stages_count_a_future_dated_article_at_its_first_seen_time(engine: Engine) -> None:
    rule = RuleConfig(name="quake", query="earthquake", channels=["ops"], min_sources=1)
    ops = ChannelConfig(name="ops", type="webhook", url="http://127.0.0.1:9/hook")
    config = FileConfig(rules=[rule], channels=[ops])
    pipeline = Pipeline(engine, config, Settings(_env_file=None))  # type: ignore[call-arg]
    with Session(engine) as session:
        source_id = ensure_source(session, "wire").id
        session.commit()
    assert source_id is not None
    ahead = datetime.now(UTC) + timedelta(days=3)
    entries = [
        ParsedEntry(
            url="http://wire.example/1",
            title="Earthquake hits the coast",
            text="An earthquake of magnitude 6 hit the coast on Monday.",
            published=ahead,
        ),
        ParsedEntry(
            url="http://wire.example/2",
            title="Parliament passes the budget",
            text="The parliament passed next year's budget after a long debate.",
            published=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        ),
    ]
    pipeline.ingest(source_id, entries)
    with engine.connect() as conn:
        articles = conn.execute(
            text("SELECT id, event_id, published, first_seen FROM articles ORDER BY id")
        ).all()
        events = {
            row.id: row
            for row in conn.execute(text("SELECT id, first_seen, last_seen FROM events"))
        }
    assert len(articles) == 2
    for article in articles:
        at = article_time(
            as_utc(article.published) if article.published else None,
            as_utc(article.first_seen),
        )
        event = events[article.event_id]
        assert as_utc(event.first_seen) == as_utc(event.last_seen) == at
    future = articles[0]
    assert as_utc(future.published) == ahead  # stored as given, counted at first seen
    assert as_utc(events[future.event_id].first_seen) == as_utc(future.first_seen)
    with Session(engine) as session:  # the time a rule's match counts at
        matched = matches_of_articles(session, [a.id for a in articles])
    assert [(m.article_id, m.at) for m in matched] == [(future.id, as_utc(future.first_seen))]
