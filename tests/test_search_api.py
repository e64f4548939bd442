"""GET /api/articles?q=, the exports (/api/articles.csv|jsonl, /api/events.csv|jsonl) and
the CLI (`newswatch articles search`, `newswatch events export`), on SQLite and Postgres,
read back with the csv and json modules."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

import newswatch.store.search as search_module
from newswatch.alerts.query import Document, evaluate, parse
from newswatch.api.app import create_app
from newswatch.config import Settings
from tests.api_support import Running, add_articles, load_corpus, replay_corpus, running
from tests.cli_support import newswatch

END = datetime(2026, 3, 1, 12, tzinfo=UTC)
HOSTILE = ['=HYPERLINK("http://evil.example")', "+1 sanctions", "-5 bankruptcy", "@SUM(A1)"]


def settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def corpus() -> list[dict]:
    return load_corpus()


@pytest.fixture
def filled(engine: Engine, corpus: list[dict]) -> dict[str, int]:
    events = replay_corpus(engine, corpus, END)
    add_articles(engine, "hostile", HOSTILE, END)
    return events


@pytest.fixture
def api(engine: Engine, filled: dict[str, int]) -> Iterator[Running]:
    with running(create_app(engine, settings())) as srv:
        yield srv


def expected_titles(rows: list[dict], query: str) -> set[str]:
    tree = parse(query)
    titles = [r["title"] for r in rows] + HOSTILE
    sources = [r["source"] or "unknown" for r in rows] + ["hostile"] * len(HOSTILE)
    return {
        t
        for t, s in zip(titles, sources, strict=True)
        if evaluate(tree, Document.of(title=t, text=None, source=s, lang=None))
    }


QUERIES = ["bankruptcy", "gox OR bitcoin", '"mt gox" -reuters', "source:reuters", "bank*"]


def walk(api: Running, params: dict[str, object]) -> list[dict]:
    items: list[dict] = []
    cursor = None
    while True:
        page = api.get("/api/articles", params={**params, "limit": 3, "cursor": cursor})
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


@pytest.mark.parametrize("query", QUERIES)
def test_article_search_pages_through_the_matches(api, corpus, query):
    items = walk(api, {"q": query})
    assert {i["title"] for i in items} == expected_titles(corpus, query)
    ids = [i["id"] for i in items]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    assert len(items) > 0


def test_bad_query_is_a_400_naming_q_and_the_column(api):
    response = api.get("/api/articles", params={"q": 'gox AND "mt'})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["parameter"] == "q"
    assert "col 9" in error["message"] and "unmatched" in error["message"]
    events = api.get("/api/events.csv", params={"q": "(gox"})
    assert events.status_code == 400 and events.json()["error"]["parameter"] == "q"


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_articles_csv_and_jsonl_match_the_list(api, corpus, monkeypatch):
    # Export pages of two rows: the keyset paging across pages must lose and repeat nothing
    # (the hostile articles share one first_seen).
    monkeypatch.setattr(search_module, "EXPORT_CHUNK", 2)
    listed = walk(api, {"q": "gox OR bitcoin OR sanctions"})
    response = api.get("/api/articles.csv", params={"q": "gox OR bitcoin OR sanctions"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "content-length" not in response.headers  # streamed
    rows = read_csv(response.text)
    assert [int(r["id"]) for r in rows] == [i["id"] for i in listed]
    as_jsonl = api.get("/api/articles.jsonl", params={"q": "gox OR bitcoin OR sanctions"})
    records = [json.loads(line) for line in as_jsonl.text.splitlines()]
    assert [r["id"] for r in records] == [i["id"] for i in listed]
    assert records[0]["first_seen"] == listed[0]["first_seen"].replace("Z", "+00:00")
    everything = read_csv(api.get("/api/articles.csv").text)
    assert len(everything) == len(corpus) + len(HOSTILE)
    assert len({r["id"] for r in everything}) == len(everything)


def test_csv_defuses_formulas(api):
    rows = read_csv(api.get("/api/articles.csv", params={"q": "source:hostile"}).text)
    titles = sorted(r["title"] for r in rows)
    assert titles == sorted("'" + t for t in HOSTILE)
    assert all(r["source_name"] == "hostile" for r in rows)
    records = [
        json.loads(line)
        for line in api.get("/api/articles.jsonl", params={"q": "source:hostile"}).text.splitlines()
    ]
    assert sorted(r["title"] for r in records) == sorted(HOSTILE)  # JSON keeps the text


def test_events_export_with_filters(api, corpus, filled, monkeypatch):
    monkeypatch.setattr(search_module, "EXPORT_CHUNK", 2)  # many chunks: none lost or repeated
    labels = {r["event"] for r in corpus if "bankruptcy" in r["title"].lower().split()}
    wanted = {filled[label] for label in labels}
    rows = read_csv(api.get("/api/events.csv", params={"q": "bankruptcy"}).text)
    assert {int(r["id"]) for r in rows} == wanted
    assert set(rows[0]) >= {"id", "title", "first_seen", "last_seen", "source_count"}
    records = [json.loads(x) for x in api.get("/api/events.jsonl").text.splitlines()]
    assert sorted(r["id"] for r in records) == sorted(set(filled.values()))
    last = [r["last_seen"] for r in records]
    assert last == sorted(last, reverse=True)
    most = max(r["source_count"] for r in records)
    assert most > min(r["source_count"] for r in records)
    big = api.get("/api/events.jsonl", params={"min_sources": most}).text.splitlines()
    assert [json.loads(x) for x in big] == [r for r in records if r["source_count"] >= most]


def test_cli_search_and_export(engine, filled, corpus, cli_env):
    found = newswatch("articles", "search", "--json", "gox OR bitcoin", env=cli_env)
    assert found.returncode == 0, found.stderr
    titles = {json.loads(line)["title"] for line in found.stdout.splitlines()}
    assert titles == expected_titles(corpus, "gox OR bitcoin")
    bad = newswatch("articles", "search", "gox AND (bitcoin", env=cli_env)
    assert bad.returncode == 2
    assert "col 9" in bad.stderr and "^" in bad.stderr
    exported = newswatch("events", "export", "--format", "csv", "-q", "bankruptcy", env=cli_env)
    assert exported.returncode == 0, exported.stderr
    labels = {r["event"] for r in corpus if "bankruptcy" in r["title"].lower().split()}
    assert {int(r["id"]) for r in read_csv(exported.stdout)} == {filled[x] for x in labels}
    lines = newswatch("events", "export", "--format", "jsonl", env=cli_env).stdout.splitlines()
    assert {json.loads(x)["id"] for x in lines} == set(filled.values())
