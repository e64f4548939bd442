"""Events in the read API and the pages, on SQLite and Postgres, via a real uvicorn."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, Insert, insert, select, update

from newswatch.api import create_app
from newswatch.config import Settings
from newswatch.store.alert_models import ArticleMatch
from newswatch.store.columns import utcnow
from newswatch.store.db import session_scope
from newswatch.store.event_views import EVENTS
from newswatch.store.models import Article, Event, table_of
from tests.api_support import (
    Running,
    add_articles,
    load_corpus,
    replay_corpus,
    running,
    source_id,
)

ARTICLES = table_of(Article)


def new_event(**values: object) -> Insert:
    """An events row as the grouping stage writes one (given id, every column set)."""
    at = values.get("first_seen", utcnow())
    defaults = {"revision": 1, "created_at": at, "updated_at": at, "top_entities": []}
    return insert(table_of(Event)).values(**(defaults | values))


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


# --- sorts, paging, filters -------------------------------------------------------------------


def page_through(api: Running, **params: object) -> list[dict]:
    """Every item of a list, following next_cursor."""
    seen: list[dict] = []
    cursor = None
    while True:
        query = {"limit": 3, **params} | ({"cursor": cursor} if cursor else {})
        body = api.get("/api/events", params=query).json()
        seen += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return seen


def first_sightings(rows: list[dict], end: datetime) -> dict[str, dict[str, datetime]]:
    """Per event label, the time each source first reported it (as replay_corpus stores it)."""
    times = [datetime.fromisoformat(r["published"].replace("Z", "+00:00")) for r in rows]
    shift = end - max(times)
    out: dict[str, dict[str, datetime]] = {}
    for row, when in zip(rows, times, strict=True):
        per_source = out.setdefault(row["event"], {})
        source = row["source"] or "unknown"
        per_source[source] = min(per_source.get(source, when + shift), when + shift)
    return out


@pytest.fixture
def timed_corpus(engine: Engine) -> tuple[Engine, dict[str, int], list[dict], datetime]:
    """The corpus with its last report a few minutes ago, placed so that no report lies
    within two minutes of the growth span's start (the test and the server read the clock at
    slightly different moments)."""
    rows = load_corpus()
    times = [datetime.fromisoformat(r["published"].replace("Z", "+00:00")) for r in rows]
    latest = max(times)
    for minutes in range(5, 60):
        boundary = latest + timedelta(minutes=minutes) - timedelta(hours=1)
        if all(abs(t - boundary) > timedelta(minutes=2) for t in times):
            break
    end = utcnow() - timedelta(minutes=minutes)
    return engine, replay_corpus(engine, rows, end=end), rows, end


def test_sorts_page_through_every_event_in_order(engine: Engine, timed_corpus) -> None:  # type: ignore[no-untyped-def]
    _engine, events, rows, end = timed_corpus
    by_label = first_sightings(rows, end)
    now = utcnow()
    growth = {
        events[label]: sum(1 for at in firsts.values() if at > now - timedelta(hours=1))
        for label, firsts in by_label.items()
    }
    assert any(growth.values()), "the corpus should grow in its last hour"
    with running(create_app(engine, Settings(_env_file=None))) as api:  # type: ignore[call-arg]
        by_size = page_through(api, sort="size")
        by_growth = page_through(api, sort="growth")
        widest = max(e["source_count"] for e in by_size)
        grown_wide = page_through(api, sort="growth", min_sources=widest)
        by_latest = page_through(api)
        # a cursor of one sort cannot page another
        cursor = api.get("/api/events", params={"limit": 2, "sort": "size"}).json()["next_cursor"]
        wrong = api.get("/api/events", params={"cursor": cursor, "sort": "latest"})
    assert sorted(e["id"] for e in by_size) == sorted(events.values())
    sizes = [(e["source_count"], e["id"]) for e in by_size]
    assert sizes == sorted(sizes, reverse=True)
    assert {e["id"]: e["growth"] for e in by_growth} == growth
    assert {e["id"]: e["growth"] for e in by_latest} == growth  # counted per page alike
    keys = [(e["growth"], e["id"]) for e in by_growth]
    assert keys == sorted(keys, reverse=True)
    # a filter keeps the order: growing events, then the rest newest first
    wide = [e["id"] for e in by_growth if e["source_count"] >= widest]
    assert [e["id"] for e in grown_wide] == wide and 0 < len(wide) < len(by_growth)
    assert wrong.status_code == 400 and wrong.json()["error"]["parameter"] == "cursor"


def test_paging_is_stable_under_inserts(api: Running, corpus) -> None:  # type: ignore[no-untyped-def]
    engine, events, _rows = corpus
    first = api.get("/api/events", params={"limit": 3}).json()
    # New reports arrive between two pages: a new event becomes the most recent.
    add_articles(engine, "latecomer", ["Breaking: something new"], utcnow(), event_id=None)
    with session_scope(engine) as session:
        session.execute(
            new_event(
                id=9999,
                title="Breaking",
                first_seen=utcnow(),
                last_seen=utcnow(),
                article_count=1,
                source_count=1,
                top_entities=[],
            )
        )
    rest, cursor = [], first["next_cursor"]
    while cursor:
        body = api.get("/api/events", params={"limit": 3, "cursor": cursor}).json()
        rest += body["items"]
        cursor = body["next_cursor"]
    ids = [e["id"] for e in first["items"] + rest]
    assert sorted(ids) == sorted(events.values())  # nothing twice, nothing skipped
    assert 9999 in {e["id"] for e in api.get("/api/events").json()["items"]}


def test_language_source_and_rule_filters(api: Running, corpus) -> None:  # type: ignore[no-untyped-def]
    engine, events, rows = corpus
    label_a, label_b = rows[0]["event"], rows[-1]["event"]
    a, b = events[label_a], events[label_b]
    with session_scope(engine) as session:
        session.execute(update(ARTICLES).where(ARTICLES.c.event_id == b).values(language="de"))
        article_id = session.execute(
            select(ARTICLES.c.id).where(ARTICLES.c.event_id == a).limit(1)
        ).scalar_one()
        session.add(ArticleMatch(article_id=article_id, rules={"mtgox": ["gox"], "o'hara": []}))
    ids = lambda **p: {e["id"] for e in api.get("/api/events", params=p).json()["items"]}  # noqa: E731
    assert ids(language="de") == {b}
    assert ids(language="DE") == {b}
    assert ids(rule="mtgox") == {a}
    assert ids(rule="o'hara") == {a}
    assert ids(rule="mt") == ids(rule="nothing") == set()
    name = rows[-1]["source"]
    expected = {events[r["event"]] for r in rows if r["source"] == name}
    assert ids(source=source_id(engine, name)) == expected
    assert api.get("/api/events", params={"sort": "sideways"}).status_code == 422


def test_generic_titles_get_the_representative_title(engine: Engine) -> None:
    at = utcnow() - timedelta(hours=1)
    ids = add_articles(engine, "blog", ["Post", "Home"], at)
    real = add_articles(
        engine, "wire", ["Dam breach floods valley town"] * 2, at + timedelta(minutes=5)
    )
    other = add_articles(engine, "wire2", ["Valley town flooded"], at + timedelta(minutes=1))
    with session_scope(engine) as session:
        session.execute(
            new_event(
                id=ids[0],
                title="Post",
                first_seen=at,
                last_seen=at,
                article_count=5,
                source_count=3,
                top_entities=["Valley"],
            )
        )
        session.execute(
            update(ARTICLES).where(ARTICLES.c.id.in_(ids + real + other)).values(event_id=ids[0])
        )
    with running(create_app(engine, Settings(_env_file=None))) as api:  # type: ignore[call-arg]
        listed = api.get("/api/events").json()["items"][0]
        detail = api.get(f"/api/events/{ids[0]}").json()
        page = api.get("/").text
    # the title most reports carry, though another real title came earlier
    assert listed["title"] == detail["title"] == "Dam breach floods valley town"
    assert listed["stored_title"] == "Post"
    assert "Dam breach floods valley town" in page


# --- the event page's contents ----------------------------------------------------------------


def test_event_detail_reads_like_evidence(engine: Engine) -> None:
    t0 = utcnow() - timedelta(days=3)
    opener, joiner, copy = add_articles(
        engine, "wire", ["Mt. Gox files for bankruptcy", "Mt. Gox bankruptcy filing", "copy"], t0
    )
    with session_scope(engine) as session:
        session.execute(
            new_event(
                id=opener,
                title="Mt. Gox files for bankruptcy",
                first_seen=t0,
                last_seen=t0,
                article_count=3,
                source_count=1,
                top_entities=[],
            )
        )
        session.execute(
            new_event(
                id=555,
                title="Bitcoin exchange halts",
                first_seen=t0,
                last_seen=t0,
                article_count=0,
                source_count=0,
                top_entities=[],
                merged_into=opener,
                updated_at=t0 + timedelta(hours=1),
            )
        )
        explain = {
            opener: {"stage": "new", "score": 0.0},
            joiner: {
                "stage": "similar",
                "score": 0.5096,
                "shared_entities": ["Mt. Gox"],
                "merged": [555],
            },
            copy: {"stage": "duplicate", "score": 0.93, "duplicate_of": joiner},
        }
        long_text = "Tokyo-based Mt. Gox said it filed. " * 20
        for article_id, why in explain.items():
            session.execute(
                update(ARTICLES)
                .where(ARTICLES.c.id == article_id)
                .values(
                    event_id=opener,
                    group_explain=why,
                    text=long_text,
                    language="en",
                    duplicate_of=why.get("duplicate_of"),
                    # a feed dated one report in the future: it counts at its first sighting
                    published=t0 + timedelta(days=9) if article_id == copy else t0,
                )
            )
    with running(create_app(engine, Settings(_env_file=None))) as api:  # type: ignore[call-arg]
        detail = api.get(f"/api/events/{opener}").json()
        page = api.get(f"/events/{opener}").text
        live = api.get("/", params={"window": "7d"}).text
    arts = {a["id"]: a for a in detail["articles"]}
    assert arts[opener]["evidence"] == "opened the event"
    assert arts[joiner]["evidence"] == (
        "joined: shares Mt. Gox with 1 earlier report; score 0.51; "
        "it brought in event #555 (Bitcoin exchange halts)"
    )
    assert arts[copy]["evidence"].startswith(f"copy of report #{joiner}")
    lead = arts[opener]["lead"]
    assert lead.startswith("Tokyo-based Mt. Gox") and lead.endswith("…") and len(lead) <= 301
    assert arts[copy]["time"] == arts[copy]["first_seen"] != arts[copy]["published"]
    assert detail["history"] == [
        {
            "kind": "merged_in",
            "event_id": 555,
            "title": "Bitcoin exchange halts",
            "at": detail["history"][0]["at"],
        }
    ]
    assert "{" not in page.split("<h2>Reports</h2>")[1].split("JSON")[0]  # no raw JSON
    assert "shares Mt. Gox with 1 earlier report" in page
    assert "1 copy of this report" in page and "Bitcoin exchange halts" in page
    # in a 7-day window the report of three days ago is on the axis
    assert 'class="tick"' in live and "first published 3 d ago" in live


def test_timeline_is_placed_by_publication_time(engine: Engine) -> None:
    """A report published 3 days ago and fetched now sits before a 24-hour axis, as the
    text beside it says, not at 'now'."""
    now = utcnow()
    old, fresh = add_articles(engine, "wire", ["Archive story resurfaces", "Follow-up"], now)
    with session_scope(engine) as session:
        session.execute(
            update(ARTICLES).where(ARTICLES.c.id == old).values(published=now - timedelta(days=3))
        )
        session.execute(
            update(ARTICLES).where(ARTICLES.c.id.in_([old, fresh])).values(event_id=old)
        )
        session.execute(
            new_event(
                id=old,
                title="Archive story resurfaces",
                first_seen=now - timedelta(days=3),
                last_seen=now,
                article_count=2,
                source_count=1,
                top_entities=[],
            )
        )
    with running(create_app(engine, Settings(_env_file=None))) as api:  # type: ignore[call-arg]
        page = api.get("/").text
    item = page.split(f'data-event-id="{old}"')[1].split("</li>")[0]
    assert item.count('class="tick"') == 1 and "1 earlier" in item
    assert "first published 3 d ago" in item


# --- triage --------------------------------------------------------------------------------------


def test_triage_marks_through_the_api(api: Running, corpus) -> None:  # type: ignore[no-untyped-def]
    engine, events, rows = corpus
    a, b = events[rows[0]["event"]], events[rows[-1]["event"]]
    post = api.client.post
    acked = post(f"/api/events/{a}/ack", params={"by": "dana"}).json()
    assert acked["event_id"] == a and acked["acknowledged"]["by"] == "dana"
    again = post(f"/api/events/{a}/ack", params={"by": "eli"}).json()
    assert again["acknowledged"] == acked["acknowledged"]  # the first mark stands
    assert post(f"/api/events/{b}/star").json()["starred"]["by"] is None
    assert post(f"/api/events/{b}/mute").json()["muted"] is not None
    listed = {e["id"]: e for e in api.get("/api/events", params={"limit": 100}).json()["items"]}
    assert listed[a]["acknowledged"]["by"] == "dana" and listed[b]["starred"]
    hidden = {e["id"] for e in page_through(api, hide_acknowledged=True)}
    assert hidden == set(events.values()) - {a}
    assert {e["id"] for e in page_through(api, starred=True)} == {b}
    undone = api.client.delete(f"/api/events/{a}/ack").json()
    assert undone["acknowledged"] is None
    assert {e["id"] for e in page_through(api, hide_acknowledged=True)} == set(events.values())
    assert api.client.delete(f"/api/events/{b}/mute").json()["muted"] is None
    assert post("/api/events/987654/ack").status_code == 404
    # a merged-away id marks the event it lives in
    with session_scope(engine) as session:
        session.execute(update(EVENTS).where(EVENTS.c.id == b).values(merged_into=a))
    assert post(f"/api/events/{b}/star").json()["event_id"] == a


def test_triage_from_the_page_and_cross_site_refusal(api: Running, corpus) -> None:  # type: ignore[no-untyped-def]
    _engine, events, rows = corpus
    a = events[rows[0]["event"]]
    form = {"action": "ack", "next": "/?sort=size"}
    same = {"Origin": api.base_url, "Sec-Fetch-Site": "same-origin"}
    done = api.client.post(f"/events/{a}/triage", data=form, headers=same)
    assert done.status_code == 303 and done.headers["location"] == "/?sort=size"
    assert api.get(f"/api/events/{a}").json()["acknowledged"] is not None
    page = api.get(f"/events/{a}").text
    assert 'value="unack"' in page and "Seen just now" in page
    # another site's form posting here is refused, whatever the browser tells
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
    ):
        for url in (f"/events/{a}/triage", f"/api/events/{a}/star"):
            refused = api.client.post(url, data={"action": "unack"}, headers=headers)
            assert refused.status_code == 403, (url, headers)
            assert refused.json()["error"]["parameter"] == "Origin"
    assert api.get(f"/api/events/{a}").json()["acknowledged"] is not None
    assert api.get(f"/api/events/{a}").json()["starred"] is None
    # an open redirect through `next` stays on this server
    away = api.client.post(
        f"/events/{a}/triage", data={"action": "star", "next": "//evil.example/x"}
    )
    assert away.status_code == 303 and away.headers["location"] == "/evil.example/x"
    bad = api.client.post(f"/events/{a}/triage", data={"action": "explode"})
    assert bad.status_code == 400 and bad.json()["error"]["parameter"] == "action"


def test_triage_writes_need_the_token(corpus) -> None:  # type: ignore[no-untyped-def]
    engine, events, rows = corpus
    a = events[rows[0]["event"]]
    app = create_app(engine, Settings(_env_file=None, NEWSWATCH_API_TOKEN="s3cret"))  # type: ignore[call-arg]
    with running(app) as srv:
        assert srv.client.post(f"/api/events/{a}/ack").status_code == 401
        assert srv.client.post(f"/events/{a}/triage", data={"action": "ack"}).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert srv.client.post(f"/api/events/{a}/ack", headers=auth).status_code == 200
        assert srv.get(f"/api/events/{a}", headers=auth).json()["acknowledged"] is not None


def test_named_tokens_record_who_marks(corpus) -> None:  # type: ignore[no-untyped-def]
    """With NEWSWATCH_API_TOKENS a mark records the token's name, not a name the client
    gives; the shared NEWSWATCH_API_TOKEN beside them keeps `by` as before."""
    engine, events, _rows = corpus
    ids = sorted(set(events.values()))
    a, b, c, d = ids[:4]
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        NEWSWATCH_API_TOKENS="alice:tok-alice, bob:tok-bob",
        NEWSWATCH_API_TOKEN="shared",
    )
    alice = {"Authorization": "Bearer tok-alice"}
    bob = {"Authorization": "Bearer tok-bob"}
    with running(create_app(engine, settings)) as srv:
        post = srv.client.post
        assert post(f"/api/events/{a}/ack").status_code == 401
        wrong = post(f"/api/events/{a}/ack", headers={"Authorization": "Bearer tok-carol"})
        assert wrong.status_code == 401
        acked = post(f"/api/events/{a}/ack", headers=alice).json()
        assert acked["acknowledged"]["by"] == "alice"
        # bob cannot speak for alice; nothing is written
        claimed = post(f"/api/events/{b}/star", params={"by": "alice"}, headers=bob)
        assert claimed.status_code == 400 and claimed.json()["error"]["parameter"] == "by"
        assert srv.get(f"/api/events/{b}", headers=bob).json()["starred"] is None
        own = post(f"/api/events/{b}/star", params={"by": "bob"}, headers=bob).json()
        assert own["starred"]["by"] == "bob"
        # the shared token: a free name, as with one token
        shared = {"Authorization": "Bearer shared"}
        muted = post(f"/api/events/{c}/mute", params={"by": "dana"}, headers=shared).json()
        assert muted["muted"]["by"] == "dana"
        assert post(f"/api/events/{c}/star", headers=shared).json()["starred"]["by"] is None
        # a browser logged in with bob's token: the page's buttons record bob
        login = srv.get("/?token=tok-bob")
        assert login.status_code == 303 and srv.client.cookies.get("newswatch_token") == "tok-bob"
        same = {"Origin": srv.base_url, "Sec-Fetch-Site": "same-origin"}
        form = {"action": "ack", "next": "/"}
        assert post(f"/events/{d}/triage", data=form, headers=same).status_code == 303
        assert srv.get(f"/api/events/{d}").json()["acknowledged"]["by"] == "bob"
