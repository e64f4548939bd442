"""The read API, health and metrics against a real uvicorn on 127.0.0.1 (SQLite and Postgres)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine

from newswatch.api import create_app
from newswatch.api.params import MAX_LIMIT
from newswatch.config import Settings, SourceConfig, parse_config_text
from newswatch.shared_types import FetchOutcome
from newswatch.store.db import make_engine, session_scope
from newswatch.store.sources import add_source, find_source
from tests.api_support import Running, add_articles, hours_ago, record_fetch, running, source_id


def settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


@pytest.fixture
def filled(engine: Engine) -> Engine:
    add_articles(engine, "alpha", ["Quake hits coast", "Budget vote delayed"], hours_ago(30))
    add_articles(engine, "beta", [f"Storm update {i}" for i in range(7)], hours_ago(2))
    add_articles(engine, "gamma", ["Rate_cut 100% certain"], hours_ago(1))
    record_fetch(engine, "alpha", FetchOutcome.OK, status=200, error=None)
    record_fetch(engine, "beta", FetchOutcome.NOT_MODIFIED, status=304, error=None)
    record_fetch(engine, "gamma", FetchOutcome.HTTP_ERROR, status=500, error="HTTP 500 from origin")
    return engine


@pytest.fixture
def api(filled: Engine) -> Iterator[Running]:
    with running(create_app(filled, settings())) as srv:
        yield srv


def error_of(response) -> dict:  # type: ignore[no-untyped-def]
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


# --- health ------------------------------------------------------------------------------------


def test_healthz_and_readyz_without_scheduler(api: Running) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["failed"] == []
    assert set(body["checks"]) == {"store", "migrations", "store_writes"}
    assert body["checks"]["migrations"]["current"] == body["checks"]["migrations"]["head"]


@dataclass
class FakeStatus:
    scheduler_running: bool
    last_tick: float | None


@pytest.mark.parametrize(
    ("running_", "tick_age", "ok"),
    [(True, 0.0, True), (False, 0.0, False), (True, None, False), (True, 3600.0, False)],
)
def test_readyz_checks_the_scheduler(
    engine: Engine, running_: bool, tick_age: float | None, ok: bool
) -> None:
    # The tick's time is taken when the test runs, not when tests are collected: a long
    # suite would otherwise make a "fresh" tick stale.
    status = FakeStatus(running_, None if tick_age is None else time.time() - tick_age)
    with running(create_app(engine, settings(), status=status)) as srv:
        response = srv.get("/readyz")
    body = response.json()
    assert response.status_code == (200 if ok else 503)
    assert body["failed"] == ([] if ok else ["scheduler"])
    if not ok:
        assert body["checks"]["scheduler"]["error"]


def test_readyz_names_stale_migrations(store_url: str) -> None:
    bare = make_engine(store_url)  # never migrated
    try:
        with running(create_app(bare, settings())) as srv:
            response = srv.get("/readyz")
            assert srv.get("/healthz").status_code == 200
    finally:
        bare.dispose()
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["migrations"]
    assert body["checks"]["migrations"]["current"] is None


def test_readyz_names_an_unreachable_store() -> None:
    # nothing listens on port 1 of the loopback: the connection is refused at once
    missing = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    with running(create_app(missing, settings())) as srv:
        response = srv.get("/readyz")
        metrics = srv.get("/metrics")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["store", "migrations"]
    assert "OperationalError" in body["checks"]["store"]["error"]
    # metrics still answer (the process's own counters) when the store is down
    assert metrics.status_code == 200 and "newswatch_fetches_total" in metrics.text


def test_readyz_does_not_hang_on_a_silent_store() -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        hung = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/none")
        app = create_app(hung, settings(), ready_timeout=0.5)
        with running(app) as srv:
            response = srv.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["store"]
    assert "did not answer within 0.5 s" in body["checks"]["store"]["error"]


# --- articles ----------------------------------------------------------------------------------


def test_articles_cursor_pagination_walks_everything_once(api: Running) -> None:
    seen: list[dict] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = api.get("/api/articles", params=params).json()
        pages += 1
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 10 and len({a["id"] for a in seen}) == 10
    assert pages == 4
    keys = [(a["first_seen"], a["id"]) for a in seen]
    assert keys == sorted(keys, reverse=True)
    assert seen[0]["source_name"] == "gamma"


def test_articles_filters(api: Running, filled: Engine) -> None:
    recent = api.get("/api/articles", params={"since": "24h"}).json()["items"]
    assert {a["source_name"] for a in recent} == {"beta", "gamma"}
    storm = api.get("/api/articles", params={"q": "STORM update 3"}).json()["items"]
    assert [a["title"] for a in storm] == ["Storm update 3"]
    # q is the alert rules' query language: whole words, "phrases", prefix*, AND/OR/NOT
    assert [a["title"] for a in api.get("/api/articles?q=rate_cut 100").json()["items"]] == [
        "Rate_cut 100% certain"
    ]
    assert api.get("/api/articles?q=_cut").json()["items"] == []  # not a substring search
    either = api.get("/api/articles", params={"q": "quake OR budget -vote"}).json()["items"]
    assert [a["title"] for a in either] == ["Quake hits coast"]
    bad = api.get("/api/articles", params={"q": "storm AND (update"})
    assert bad.status_code == 400
    assert error_of(bad)["parameter"] == "q"
    assert "col 11" in error_of(bad)["message"]
    alpha = source_id(filled, "alpha")
    by_source = api.get("/api/articles", params={"source": alpha}).json()["items"]
    assert {a["title"] for a in by_source} == {"Quake hits coast", "Budget vote delayed"}
    iso = api.get("/api/articles", params={"since": hours_ago(1.5).isoformat()}).json()
    assert [a["source_name"] for a in iso["items"]] == ["gamma"]


def test_article_detail_lists_sightings(api: Running) -> None:
    first = api.get("/api/articles", params={"q": "Quake"}).json()["items"][0]
    detail = api.get(f"/api/articles/{first['id']}").json()
    assert detail["title"] == "Quake hits coast"
    assert [s["source_name"] for s in detail["sightings"]] == ["alpha"]
    missing = api.get("/api/articles/999999")
    assert missing.status_code == 404 and "999999" in error_of(missing)["message"]


@pytest.mark.parametrize(
    ("query", "parameter", "status"),
    [
        ("limit=0", "limit", 422),
        ("limit=abc", "limit", 422),
        ("since=yesterday-ish", "since", 400),
        ("cursor=not-a-cursor", "cursor", 400),
        ("source=-1", "source", 422),
        ("event=99999999999999", "event", 422),
        ("q=" + "x" * 1500, "q", 422),
        ("q=%25", "q", 400),
    ],
)
def test_bad_parameters_name_the_parameter(
    api: Running, query: str, parameter: str, status: int
) -> None:
    response = api.get(f"/api/articles?{query}")
    assert response.status_code == status
    assert error_of(response)["parameter"] == parameter


def test_huge_page_size_is_capped(api: Running) -> None:
    page = api.get("/api/articles", params={"limit": 10**12}).json()
    assert page["limit"] == MAX_LIMIT
    assert len(page["items"]) == 10


def test_nul_in_text_query_is_harmless(api: Running) -> None:
    response = api.get("/api/articles", params={"q": "Storm\x00 update 1"})
    assert response.status_code == 200


def test_no_events_yet(engine: Engine) -> None:
    with running(create_app(engine, settings())) as srv:
        listed = srv.get("/api/events")
        page = srv.get("/")
        missing = srv.get("/api/events/1")
    assert listed.status_code == 200 and listed.json()["items"] == []
    assert page.status_code == 200 and "No events in the last 24 hours" in page.text
    assert missing.status_code == 404


def test_no_events_while_sources_fail_says_so(engine: Engine) -> None:
    """An empty events page names the failing sources: the news is not quiet, the feeds are."""
    with session_scope(engine) as session:
        for name in ("a", "b", "c", "off"):
            add_source(session, SourceConfig(name=name, url=f"https://{name}.example/feed"))
        for name in ("a", "b", "off"):
            source = find_source(session, name)
            assert source is not None
            source.consecutive_errors = 3
            source.enabled = name != "off"  # a disabled source is not polled: not counted
    record_fetch(engine, "replayed", FetchOutcome.HTTP_ERROR, status=500, error="a replay source")
    with running(create_app(engine, settings())) as srv:
        failing = srv.get("/").text
        with session_scope(engine) as session:
            for name in ("a", "b"):
                find_source(session, name).consecutive_errors = 0  # type: ignore[union-attr]
        healthy = srv.get("/").text
    assert '2 of 3 sources failing</strong> — see <a href="/sources">Sources</a>' in failing
    assert "failing" not in healthy and "No events in the last 24 hours yet" in healthy


# --- sources -----------------------------------------------------------------------------------


def test_sources_with_fetch_state(api: Running) -> None:
    items = api.get("/api/sources").json()["items"]
    assert [s["name"] for s in items] == ["gamma", "alpha", "beta"]  # failing first
    gamma = items[0]
    assert gamma["consecutive_errors"] == 1 and gamma["last_error"] == "HTTP 500 from origin"
    assert gamma["errors_24h"] == 1 and gamma["articles"] == 1
    beta = next(s for s in items if s["name"] == "beta")
    assert beta["not_modified_24h"] == 1 and beta["articles"] == 7
    failing = api.get("/api/sources", params={"in_error": "true"}).json()["items"]
    assert [s["name"] for s in failing] == ["gamma"]
    detail = api.get(f"/api/sources/{gamma['id']}").json()
    assert [f["status"] for f in detail["recent_fetches"]] == [500]
    assert api.get("/api/sources/424242").status_code == 404


# --- metrics -----------------------------------------------------------------------------------


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_metrics_computes_store_gauges(api: Running) -> None:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert sample(text, "newswatch_sources_in_error") == 1
    assert sample(text, "newswatch_fetch_not_modified_ratio") == pytest.approx(1 / 3)
    assert 'newswatch_sources{state="disabled"} 3.0' in text
    for name in ("newswatch_fetches_total", "newswatch_fetch_duration_seconds"):
        assert f"# TYPE {name}" in text


# --- token -------------------------------------------------------------------------------------


def test_token_guards_everything_but_health(filled: Engine) -> None:
    app = create_app(filled, settings(NEWSWATCH_API_TOKEN="s3cret"))
    with running(app) as srv:
        for path in ("/api/sources", "/api/articles", "/metrics", "/", "/sources", "/docs"):
            refused = srv.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Bearer")
        wrong = srv.get("/api/sources", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and error_of(wrong)["parameter"] == "Authorization"
        assert srv.get("/healthz").status_code == 200
        assert srv.get("/readyz").status_code == 200
        ok = srv.get("/api/sources", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and len(ok.json()["items"]) == 3
        # a browser logs in once with ?token=; the cookie carries it afterwards
        login = srv.get("/sources?token=s3cret&x=1")
        assert login.status_code == 303 and login.headers["location"] == "/sources?x=1"
        assert "newswatch_token" in login.cookies
        page = srv.get("/sources")  # the client keeps the cookie, as a browser does
        assert page.status_code == 200 and "gamma" in page.text


# --- rules -------------------------------------------------------------------------------------


def test_rules_come_from_the_config(engine: Engine) -> None:
    config = parse_config_text(
        "channels:\n  - name: ops\n    type: webhook\n    url: http://127.0.0.1:9/hook\n"
        "rules:\n  - name: quakes\n    query: earthquake\n    channels: [ops]\n    min_sources: 3\n"
    )
    with running(create_app(engine, settings(), config=config)) as srv:
        listed = srv.get("/api/rules").json()["items"]
    assert listed == [
        {
            "name": "quakes",
            "query": "earthquake",
            "channels": ["ops"],
            "options": {"min_sources": 3},
        }
    ]
    with running(create_app(engine, settings())) as srv:
        assert srv.get("/api/rules").json() == {"items": []}
