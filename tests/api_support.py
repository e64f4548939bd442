"""Helpers of the API tests: the app on a real uvicorn on 127.0.0.1, and a small store."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine, insert, update
from sqlalchemy import distinct as sa_distinct
from sqlalchemy import func as sa_func
from sqlmodel import Session, select

from newswatch.api.server import bound_port, make_server, serve
from newswatch.store.columns import utcnow
from newswatch.store.db import session_scope
from newswatch.store.event_views import EVENTS
from newswatch.store.models import Article, Event, Fetch, Sighting, Source
from newswatch.store.search import index_articles


@dataclass
class Running:
    base_url: str
    client: httpx.Client

    def get(self, path: str, **kw: object) -> httpx.Response:
        return self.client.get(path, **kw)  # type: ignore[arg-type]


@contextmanager
def running(app: FastAPI) -> Iterator[Running]:
    """Serve `app` with `newswatch.api.serve` in a thread of its own on 127.0.0.1."""
    server = make_server(app, "127.0.0.1", 0)
    loop = asyncio.new_event_loop()
    stop_holder: dict[str, asyncio.Event] = {}
    errors: list[BaseException] = []

    async def main() -> None:
        stop_holder["stop"] = asyncio.Event()
        await serve(app, "127.0.0.1", 0, stop_holder["stop"], server=server)

    def thread_main() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    thread = threading.Thread(target=thread_main, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started or errors or not thread.is_alive():
            break
        threading.Event().wait(0.02)
    if not server.started:
        raise RuntimeError(f"uvicorn did not start: {errors}")
    base = f"http://127.0.0.1:{bound_port(server)}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            yield Running(base, client)
    finally:
        loop.call_soon_threadsafe(stop_holder["stop"].set)
        thread.join(30)
    if errors:
        raise errors[0]


def ensure_source(session: Session, name: str) -> Source:
    source = session.exec(select(Source).where(Source.name == name)).first()
    if source is None:
        url = f"https://{name}.example/feed"
        source = Source(
            name=name, url=url, configured_url=url, origin="replay", enabled=False, kind="replay"
        )
        session.add(source)
        session.flush()
    return source


def add_articles(
    engine: Engine,
    source_name: str,
    titles: list[str],
    at: datetime,
    *,
    event_id: int | None = None,
    also_seen_at: tuple[str, ...] = (),
) -> list[int]:
    """Store one article per title, first seen at `source_name` at time `at` (direct inserts:
    these tests are about reading the store, not filling it)."""
    ids = []
    with session_scope(engine) as session:
        source = ensure_source(session, source_name)
        others = [ensure_source(session, name) for name in also_seen_at]
        for i, title in enumerate(titles):
            url = f"https://{source_name}.example/{at:%H%M%S}/{i}"
            article = Article(
                url=url,
                canonical_url=url,
                title=title,
                summary=f"{title}. A summary about {title.lower()}.",
                published=at,
                first_seen=at,
                content_hash=hashlib.sha256(url.encode()).hexdigest(),
                source_id=source.id,
                event_id=event_id,
            )
            session.add(article)
            session.flush()
            for carrier in (source, *others):
                session.add(
                    Sighting(
                        article_id=article.id,  # type: ignore[arg-type]
                        source_id=carrier.id,  # type: ignore[arg-type]
                        entry_url=url,
                        first_seen=at,
                    )
                )
            ids.append(article.id)
        index_articles(session, ids)  # type: ignore[arg-type]  # what store_batch does
    return ids  # type: ignore[return-value]


def record_fetch(
    engine: Engine, source_name: str, outcome: str, *, status: int | None, error: str | None
) -> None:
    """A fetch log row and the source state it leaves, as the poller writes them."""
    with session_scope(engine) as session:
        source = ensure_source(session, source_name)
        now = utcnow()
        session.add(
            Fetch(
                source_id=source.id,  # type: ignore[arg-type]
                started_at=now,
                url=source.url,
                status=status,
                outcome=outcome,
                error=error,
            )
        )
        source.last_fetch_at = now
        source.last_status = status
        source.last_outcome = outcome
        source.last_error = error
        if error:
            source.consecutive_errors += 1
        else:
            source.consecutive_errors = 0
            source.last_success_at = now
        session.add(source)


def hours_ago(hours: float) -> datetime:
    return utcnow() - timedelta(hours=hours)


def source_id(engine: Engine, name: str) -> int:
    with session_scope(engine) as session:
        source = ensure_source(session, name)
        assert isinstance(source, Source) and source.id is not None
        return source.id


FIXTURES = Path(__file__).parent / "fixtures" / "api"


def load_corpus(name: str = "uci-headlines-sample.jsonl") -> list[dict]:
    with (FIXTURES / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def replay_corpus(engine: Engine, rows: list[dict], end: datetime) -> dict[str, int]:
    """Store a labelled corpus as if it had been fetched, its last report arriving at `end`;
    one event per gold label stands in for the grouping stage. Returns label -> event id."""
    times = [datetime.fromisoformat(r["published"].replace("Z", "+00:00")) for r in rows]
    shift = end - max(times)
    events: dict[str, int] = {}
    with session_scope(engine) as session:
        for row, when in zip(rows, times, strict=True):
            seen = when + shift
            source = ensure_source(session, row["source"] or "unknown")
            event_id = events.get(row["event"])
            if event_id is None:
                event_id = events[row["event"]] = _open_event(session, row["title"], seen)
            article = Article(
                url=row["url"],
                canonical_url=row["url"],
                title=row["title"],
                published=seen,
                first_seen=seen,
                content_hash=hashlib.sha256(row["id"].encode()).hexdigest(),
                source_id=source.id,
                event_id=event_id,
            )
            session.add(article)
            session.flush()
            session.add(Sighting(article_id=article.id, source_id=source.id, first_seen=seen))  # type: ignore[arg-type]
            session.flush()
            _refresh_event(session, event_id)
        index_articles(session)  # the full-text index, as store_batch writes it
    return events


def _open_event(session: Session, title: str, at: datetime) -> int:
    # Event ids are given, not generated (the grouping stage uses the opening article's id).
    event_id = int(session.execute(select(sa_func.coalesce(sa_func.max(Event.id), 0))).one()[0]) + 1
    values = {
        "title": title,
        "first_seen": at,
        "last_seen": at,
        "top_entities": [],
        "revision": 1,
        "created_at": at,
        "updated_at": at,
    }
    session.execute(
        insert(Event.__table__).values(id=event_id, article_count=0, source_count=0, **values)
    )
    return event_id


def _refresh_event(session: Session, event_id: int) -> None:
    articles_t, sightings_t = Article.__table__, Sighting.__table__  # type: ignore[attr-defined]
    a, s = articles_t.c, sightings_t.c
    stats = (
        select(
            sa_func.count(sa_distinct(a.id)),
            sa_func.count(sa_distinct(s.source_id)),
            sa_func.min(a.first_seen),
            sa_func.max(a.first_seen),
        )
        .select_from(articles_t.join(sightings_t, s.article_id == a.id))
        .where(a.event_id == event_id)
    )
    articles, sources, first, last = session.execute(stats).one()
    session.execute(
        update(EVENTS)
        .where(EVENTS.c.id == event_id)
        .values(article_count=articles, source_count=sources, first_seen=first, last_seen=last)
    )
