"""Events: the /api/events endpoints and the live pages (/ and /events/{id})."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from newswatch.api import events
from newswatch.api.deps import get_session
from newswatch.api.errors import ApiError
from newswatch.api.pages import render
from newswatch.api.params import DEFAULT_LIMIT, MAX_ID, Cursor, cap_limit, clean_text
from newswatch.api.params import parse_since as parse_since_param
from newswatch.api.routes import CursorParam, Id, Limit, SessionDep, Since, not_found
from newswatch.api.routes import router as api_router
from newswatch.api.schemas import EventDetail, EventOut, EventPage
from newswatch.store.models import Article
from newswatch.store.sources import polled_source_health

api = APIRouter(
    prefix=api_router.prefix, dependencies=api_router.dependencies, responses=api_router.responses
)
pages = APIRouter(include_in_schema=False)


@api.get("/events", response_model=EventPage, tags=["events"])
def list_events(
    session: SessionDep,
    since: Since = None,
    q: Annotated[
        str | None,
        Query(max_length=200, description="text in the event title or an article title"),
    ] = None,
    min_sources: Annotated[
        int | None, Query(ge=1, le=100_000, description="at least this many distinct sources")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> EventPage:
    """Events (groups of reports about one happening), most recent activity first."""
    return events.list_events(
        session,
        limit=cap_limit(limit),
        cursor=Cursor.decode(cursor),
        since=parse_since_param(since),
        q=clean_text(q),
        min_sources=min_sources,
    )


@api.get("/events/{event_id}", response_model=EventDetail, tags=["events"])
def event(session: SessionDep, event_id: Id) -> EventDetail:
    """One event with its articles, the sources that carried each and why each joined.

    The id of an event merged into another answers with the surviving event (its `id` differs
    and `merged_from` lists the requested id)."""
    found = events.get_event(session, event_id)
    if found is None:
        raise not_found("event", event_id)
    return found


LIVE_WINDOW = timedelta(hours=24)
LIVE_EVENTS = 100
ARTICLES_SHOWN = 30
TIMELINE_WIDTH = 240


@dataclass
class EventView:
    event: EventOut
    ticks: list[tuple[float, str]]  # x position in the timeline, label
    articles: list[tuple[Article, str | None]]
    hidden: int  # articles not listed


def timeline(times: list[datetime], start: datetime, end: datetime) -> list[tuple[float, str]]:
    """x positions (0..TIMELINE_WIDTH) of report times inside [start, end]."""
    span = (end - start).total_seconds()
    ticks = []
    for when in times:
        offset = (when - start).total_seconds()
        if 0 <= offset <= span:
            x = round(offset / span * TIMELINE_WIDTH, 1)
            ticks.append((x, when.strftime("%H:%M UTC")))
    return ticks


def live_events(
    session: Session, now: datetime, *, q: str | None = None, min_sources: int | None = None
) -> list[EventView]:
    start = now - LIVE_WINDOW
    page = events.list_events(session, limit=LIVE_EVENTS, since=start, q=q, min_sources=min_sources)
    articles = events.event_articles(session, [e.id for e in page.items])
    views = []
    for event in page.items:
        pairs = articles.get(event.id, [])
        ticks = timeline([a.first_seen for a, _ in pairs], start, now)
        shown = list(reversed(pairs))[:ARTICLES_SHOWN]  # newest first
        views.append(EventView(event, ticks, shown, len(pairs) - len(shown)))
    return views


def _page_int(value: str | None, low: int, high: int) -> int | None:
    """A filter from a page's form: out-of-range or non-numeric values mean no filter."""
    try:
        number = int(value or "")
    except ValueError:
        return None
    return number if low <= number <= high else None


@pages.get("/", response_class=HTMLResponse)
def live_page(request: Request, session: Session = Depends(get_session)) -> HTMLResponse:
    now = datetime.now(UTC)
    q = clean_text((request.query_params.get("q") or "")[:200])
    min_sources = _page_int(request.query_params.get("min_sources"), 2, 100_000)
    views = live_events(session, now, q=q, min_sources=min_sources)
    # With no events to show, say when the cause may be the sources, not the news.
    failing, polled = polled_source_health(session) if not views else (0, 0)
    return render(
        request,
        "events.html",
        now=now,
        events=views,
        failing=failing,
        polled=polled,
        width=TIMELINE_WIDTH,
        refresh=60,
        q=q or "",
        min_sources=min_sources or 1,
        source_choices=[1, 2, 3, 5, 10],
    )


@pages.get("/events/{event_id}", response_class=HTMLResponse)
def event_page(
    request: Request, event_id: int, session: Session = Depends(get_session)
) -> HTMLResponse:
    detail = events.get_event(session, event_id) if 1 <= event_id <= MAX_ID else None
    if detail is None:
        raise ApiError(404, f"no event with id {event_id}", "event_id")
    return render(request, "event.html", event=detail)
