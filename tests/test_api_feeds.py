"""Atom feeds of events and of a rule's notifications, read back with feedparser from a real
uvicorn, on SQLite and Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import feedparser
import pytest
from sqlalchemy import Engine

from newswatch.alerts.config import RuleConfig
from newswatch.api import create_app
from newswatch.config import FileConfig, Settings
from newswatch.store.alert_models import AlertState
from newswatch.store.columns import utcnow
from newswatch.store.db import session_scope
from tests.api_support import Running, load_corpus, replay_corpus, running

RULE = RuleConfig(name="quakes", query="earthquake", channels=["ops"])


def settings(**kw: str) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[arg-type]


@pytest.fixture
def corpus(engine: Engine) -> tuple[Engine, dict[str, int], list[dict]]:
    rows = load_corpus()
    return engine, replay_corpus(engine, rows, end=utcnow() - timedelta(minutes=5)), rows


def serve(engine: Engine, **kw: str) -> Iterator[Running]:
    config = FileConfig.model_construct(rules=[RULE], channels=[], sources=[])
    with running(create_app(engine, settings(**kw), config=config)) as srv:
        yield srv


@pytest.fixture
def api(corpus) -> Iterator[Running]:  # type: ignore[no-untyped-def]
    yield from serve(corpus[0])


def parse(response) -> feedparser.FeedParserDict:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    return feed


def test_events_feed_lists_the_most_active_events_with_their_reports(api: Running, corpus) -> None:  # type: ignore[no-untyped-def]
    _engine, events, rows = corpus
    feed = parse(api.get("/feeds/events.atom"))
    api_items = api.get("/api/events", params={"limit": 50}).json()["items"]
    # The same events in the same order as the API, one entry each, with stable ids.
    assert [e.id for e in feed.entries] == [f"urn:newswatch:event:{e['id']}" for e in api_items]
    first, event = feed.entries[0], api_items[0]
    assert first.title == f"{event['title']} ({event['source_count']} sources)"
    assert first.link == f"{api.base_url}/events/{event['id']}"
    assert first.updated_parsed is not None
    # The entry's reports link to the articles themselves.
    label = next(k for k, v in events.items() if v == event["id"])
    urls = {r["url"] for r in rows if r["event"] == label}
    linked = {href for href in urls if f'href="{href}"' in first.content[0].value}
    assert linked and len(linked) == min(len(urls), 10)
    assert f"{event['article_count']} reports from {event['source_count']} sources" in (
        first.content[0].value
    )
    # Filters as in the API.
    most = max(e["source_count"] for e in api_items)
    wide = parse(api.get("/feeds/events.atom", params={"min_sources": most}))
    assert [e.id for e in wide.entries] == [
        f"urn:newswatch:event:{e['id']}" for e in api_items if e["source_count"] >= most
    ]
    assert 0 < len(wide.entries) < len(feed.entries)
    assert f"{most}+ sources" in wide.feed.title
    assert parse(api.get("/feeds/events.atom", params={"since": "2000-01-01"})).entries
    old = api.get("/feeds/events.atom", params={"since": "nonsense"})
    assert old.status_code == 400 and old.json()["error"]["parameter"] == "since"


def test_rule_feed_lists_what_the_rule_notified(api: Running, corpus) -> None:  # type: ignore[no-untyped-def]
    engine, events, _rows = corpus
    ids = sorted(events.values())[:3]
    now = utcnow()
    with session_scope(engine) as session:
        session.add(AlertState(rule="quakes", event_id=ids[0], revision=1, last_at=now))
        session.add(
            AlertState(rule="quakes", event_id=ids[1], revision=1, last_at=now - timedelta(hours=1))
        )
        session.add(AlertState(rule="quakes", event_id=ids[2], status="silenced", last_at=now))
        session.add(AlertState(rule="other", event_id=ids[2], revision=1, last_at=now))
    feed = parse(api.get("/feeds/rules/quakes.atom"))
    # Newest notification first; silenced events and other rules' events are not in it.
    assert [e.id for e in feed.entries] == [f"urn:newswatch:event:{i}" for i in ids[:2]]
    assert feed.feed.title == "newswatch alerts: quakes"
    missing = api.get("/feeds/rules/nope.atom")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]


def test_feeds_take_the_token_in_the_url(corpus) -> None:  # type: ignore[no-untyped-def]
    for srv in serve(corpus[0], NEWSWATCH_API_TOKEN="s3cret"):
        assert srv.get("/feeds/events.atom").status_code == 401
        assert srv.get("/feeds/events.atom", params={"token": "wrong"}).status_code == 401
        assert parse(srv.get("/feeds/events.atom", params={"token": "s3cret"})).entries
        # Elsewhere the query token still only sets the cookie (a redirect), as before.
        page = srv.get("/api/events", params={"token": "s3cret"})
        assert page.status_code == 303


def test_entries_link_the_event_pages_under_the_public_url(corpus) -> None:  # type: ignore[no-untyped-def]
    """Behind a proxy the service sees its own address; readers need the public one."""
    public = "https://news.example.org/watch"
    for srv in serve(corpus[0], NEWSWATCH_PUBLIC_URL=public + "/"):
        feed = parse(srv.get("/feeds/events.atom", params={"min_sources": 1}))
        assert feed.entries
        for entry in feed.entries:
            event_id = entry.id.rsplit(":", 1)[1]
            assert entry.link == f"{public}/events/{event_id}"
        assert feed.feed.link == f"{public}/"
        self_link = next(link.href for link in feed.feed.links if link.rel == "self")
        assert self_link == f"{public}/feeds/events.atom?min_sources=1"
