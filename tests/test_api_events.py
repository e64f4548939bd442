"""Events in the read API and the pages, on SQLite and Postgres, via a real uvicorn."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, update

from newswatch.api import create_app
from newswatch.api.events import EVENTS
from newswatch.config import Settings
from newswatch.store.columns import utcnow
from newswatch.store.db import session_scope
from tests.api_support import Running, load_corpus, replay_corpus, running


@pytest.fixture
def corpus(engine: Engine) -> tuple[Engine, dict[str, int], list[dict]]:
    rows = load_corpus()
    events = replay_corpus(engine, rows, end=utcnow() - timedelta(minutes=5))
    return engine, events, rows


@pytest.fixture
def api(corpus) -> Iterator[Running]:  # type: ignore[no-untyped-def]
    with running(create_app(corpus[0], Settings(_env_file=None))) as srv:  # type: ignore[call-arg]
        yield srv


def distinct_sources(rows: list[dict], label: str) -> int:
    return len({r["source"] for r in rows if r["event"] == label})


def test_events_sorted_by_last_activity_and_paged(api: Running, corpus) -> None:  # type: ignore[no-untyped-def]
    _engine, events, rows = corpus
    seen, cursor = [], None
    while True:
        page = api.get("/api/events", params={"limit": 3} | ({"cursor": cursor} if cursor else {}))
        body = page.json()
        seen += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert sorted(e["id"] for e in seen) == sorted(events.values())
    last = [(e["last_seen"], e["id"]) for e in seen]
    assert last == sorted(last, reverse=True)
    counts = Counter(r["event"] for r in rows)
    by_id = {v: k for k, v in events.items()}
    for event in seen:
        label = by_id[event["id"]]
        assert event["article_count"] == counts[label]
        assert event["source_count"] == distinct_sources(rows, label)


def test_event_filters(api: Running, corpus) -> None:  # type: ignore[no-untyped-def]
    _engine, events, rows = corpus
    wide = [e for e in events if distinct_sources(rows, e) >= 10]
    got = api.get("/api/events", params={"min_sources": 10}).json()["items"]
    assert sorted(e["id"] for e in got) == sorted(events[e] for e in wide)
    # q matches article titles, not only the event title
    some = next(
        r for r in rows if r["event"] == rows[0]["event"] and r["title"] != rows[0]["title"]
    )
    word = max(some["title"].split(), key=len)
    hits = {e["id"] for e in api.get("/api/events", params={"q": word}).json()["items"]}
    assert events[rows[0]["event"]] in hits
    expected = {events[r["event"]] for r in rows if word.lower() in r["title"].lower()}
    assert hits == expected
    assert api.get("/api/events", params={"since": "1m"}).json()["items"] == []
    assert len(api.get("/api/events", params={"since": "24h"}).json()["items"]) == len(events)


def test_event_detail_and_merged_ids(api: Running, corpus) -> None:  # type: ignore[no-untyped-def]
    engine, events, rows = corpus
    label_a, label_b = rows[0]["event"], rows[-1]["event"]
    a, b = events[label_a], events[label_b]
    detail = api.get(f"/api/events/{a}").json()
    assert detail["id"] == a
    assert len(detail["articles"]) == sum(1 for r in rows if r["event"] == label_a)
    assert sorted(detail["sources"]) == sorted({r["source"] for r in rows if r["event"] == label_a})
    assert all(art["sources"] for art in detail["articles"])
    # an event merged away answers with the survivor and leaves the list
    with session_scope(engine) as session:
        session.execute(update(EVENTS).where(EVENTS.c.id == b).values(merged_into=a))
    merged = api.get(f"/api/events/{b}").json()
    assert merged["id"] == a and merged["merged_from"] == [b]
    listed = {e["id"] for e in api.get("/api/events", params={"limit": 100}).json()["items"]}
    assert b not in listed and a in listed
    assert api.get("/api/events/987654").status_code == 404


def test_live_page_lists_events(api: Running, corpus) -> None:  # type: ignore[no-untyped-def]
    _engine, events, rows = corpus
    page = api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.count('class="event"') == len(events)
    assert rows[-1]["title"] in page.text
    event_page = api.get(f"/events/{events[rows[0]['event']]}")
    assert event_page.status_code == 200 and rows[0]["title"] in event_page.text
    assert api.get("/events/0").status_code == 404
    wide = [e for e in events if distinct_sources(rows, e) >= 10]
    filtered = api.get("/", params={"min_sources": 10}).text
    assert filtered.count('class="event"') == len(wide)
    # the page's form values never cause an error page: bad ones mean no filter
    loose = api.get("/", params={"min_sources": "lots", "q": "\x00"})
    assert loose.status_code == 200 and loose.text.count('class="event"') == len(events)
