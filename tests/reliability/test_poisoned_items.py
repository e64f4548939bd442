"""One poisoned item must not stall a source (issue 20, item 3): text is cleaned where it
enters the store, an item the store cannot hold is rejected with its reason while the others
are stored, and a poll whose write fails is recorded on the source like any failed poll.
Store tests: SQLite and Postgres."""

from __future__ import annotations

import asyncio
import json

import feedparser
from sqlalchemy import text
from sqlmodel import Session, select

from newswatch.api import create_app
from newswatch.config import FileConfig, Settings, SourceConfig
from newswatch.service import Service
from newswatch.store.models import Article, Fetch, Source
from tests.api_support import running
from tests.localserver import static


def _settings(**extra: object) -> Settings:
    return Settings(NEWSWATCH_HTTP_MIN_HOST_DELAY=0, **extra)  # type: ignore[arg-type]


def _json_feed(*items: dict[str, object]) -> bytes:
    return json.dumps(
        {"version": "https://jsonfeed.org/version/1.1", "title": "Poisoned", "items": list(items)}
    ).encode()


def _item(n: int, **extra: object) -> dict[str, object]:
    return {
        "id": f"https://example.org/{n}",
        "url": f"https://example.org/{n}",
        "title": f"Headline number {n} about the harbour",
        "content_text": f"Body of story {n}: the harbour reopened after the storm.",
        **extra,
    }


def _poll(engine, url: str, **settings: object) -> None:  # type: ignore[no-untyped-def]
    config = FileConfig(sources=[SourceConfig(name="poisoned", url=url)])
    asyncio.run(Service(engine, config, _settings(**settings)).run_once())


def _source(engine) -> Source:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return session.exec(select(Source).where(Source.name == "poisoned")).one()


def test_control_characters_are_removed_and_every_item_is_stored(engine, server):
    nul = _item(2, title="Bad\u0000 title\u0007 with\ttab", content_text="Line one\r\nline\x1b two")
    server.routes["/feed.json"] = static(
        _json_feed(_item(1), nul, _item(3)), content_type="application/feed+json"
    )
    _poll(engine, server.url("/feed.json"))
    with Session(engine) as session:
        titles = sorted(session.exec(select(Article.title)).all())
        texts = session.exec(select(Article.summary).where(Article.guid.like("%/2"))).all()
    assert titles == [
        "Bad title with\ttab",
        "Headline number 1 about the harbour",
        "Headline number 3 about the harbour",
    ]
    assert texts == ["Line one\nline two"]
    source = _source(engine)
    assert (source.last_outcome, source.consecutive_errors) == ("ok", 0)
    # The events feed carries the title: well-formed XML (a stored NUL broke it on SQLite).
    with running(create_app(engine, Settings(_env_file=None))) as api:  # type: ignore[call-arg]
        response = api.get("/feeds/events.atom")
    feed = feedparser.parse(response.content)
    assert response.status_code == 200 and not feed.bozo, feed.get("bozo_exception")
    assert "Bad title with\ttab (1 sources)" in {entry.title for entry in feed.entries}


def test_an_item_the_store_cannot_hold_is_rejected_alone_with_its_reason(engine, server):
    # A language tag longer than the column: Postgres raised DataError for the whole poll.
    bad = _item(2, language="en-GB-x-" + "very-long-private-use" * 2)
    server.routes["/feed.json"] = static(
        _json_feed(_item(1), bad, _item(3)), content_type="application/feed+json"
    )
    _poll(engine, server.url("/feed.json"))
    with Session(engine) as session:
        guids = sorted(session.exec(select(Article.guid)).all())
        fetch = session.exec(select(Fetch)).one()
    assert guids == ["https://example.org/1", "https://example.org/3"]
    assert (fetch.entries, fetch.new_articles) == (3, 2)
    assert fetch.error is not None
    assert "https://example.org/2" in fetch.error and "language" in fetch.error
    source = _source(engine)
    assert source.last_error == fetch.error


def test_a_failed_write_is_recorded_on_the_source(engine, server):
    """Whatever the store refuses (here: a trigger that fails every article insert), the poll
    is recorded: outcome, error, consecutive errors, a fetch-log row, a later retry."""
    server.routes["/feed.json"] = static(
        _json_feed(_item(1), _item(2)), content_type="application/feed+json"
    )
    _refuse_article_inserts(engine)
    _poll(engine, server.url("/feed.json"))
    source = _source(engine)
    assert source.last_outcome == "store_error"
    assert source.consecutive_errors == 1
    assert source.last_error and "refused" in source.last_error
    assert source.etag is None and source.next_fetch_at is not None
    with Session(engine) as session:
        fetch = session.exec(select(Fetch)).one()
        assert session.exec(select(Article)).all() == []
    assert (fetch.outcome, fetch.entries, fetch.new_articles) == ("store_error", 2, 0)
    assert fetch.error == source.last_error


def _refuse_article_inserts(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON articles "
                    "BEGIN SELECT RAISE(ABORT, 'article inserts refused'); END"
                )
            )
            return
        conn.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'article inserts refused'; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER refuse BEFORE INSERT ON articles "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        )


def test_text_stored_before_the_cleaning_does_not_break_the_atom_feed(sqlite_engine, server):
    """SQLite kept a NUL of a title before the store's boundary removed them: the events feed
    stays well-formed XML over such rows."""
    server.routes["/feed.json"] = static(_json_feed(_item(1)), content_type="application/feed+json")
    _poll(sqlite_engine, server.url("/feed.json"))
    with sqlite_engine.begin() as conn:
        conn.execute(text("UPDATE events SET title = 'Old' || char(0) || ' title' || char(27)"))
        conn.execute(text("UPDATE articles SET title = 'Old' || char(0) || ' article'"))
    with running(create_app(sqlite_engine, Settings(_env_file=None))) as api:  # type: ignore[call-arg]
        response = api.get("/feeds/events.atom")
    feed = feedparser.parse(response.content)
    assert response.status_code == 200 and not feed.bozo, feed.get("bozo_exception")
    assert [entry.title for entry in feed.entries] == ["Old title (1 sources)"]
    assert "Old article" in feed.entries[0].summary
