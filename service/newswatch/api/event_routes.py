"""Events: the /api/events endpoints, their triage writes, and the live pages (/ and
/events/{id})."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Literal
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from newswatch.alerts.query import QueryError, words
from newswatch.api import events
from newswatch.api.articles_routes import search_query
from newswatch.api.auth import local_path, token_name
from newswatch.api.csrf import require_same_origin
from newswatch.api.deps import get_session
from newswatch.api.errors import ApiError
from newswatch.api.pages import render
from newswatch.api.params import (
    DEFAULT_LIMIT,
    EVENT_SORTS,
    MAX_ID,
    MAX_LIMIT,
    EventCursor,
    cap_limit,
    clean_text,
)
from newswatch.api.params import parse_since as parse_since_param
from newswatch.api.routes import CursorParam, Id, Limit, SessionDep, Since, not_found
from newswatch.api.routes import router as api_router
from newswatch.api.schemas import ErrorOut, EventArticle, EventDetail, EventOut, EventPage, Triage
from newswatch.store import event_views
from newswatch.store.columns import utcnow
from newswatch.store.db import session_scope
from newswatch.store.event_triage import MARKS, MAX_NAME, Mark
from newswatch.store.search import compile_query
from newswatch.store.sources import polled_source_health

api = APIRouter(
    prefix=api_router.prefix, dependencies=api_router.dependencies, responses=api_router.responses
)
pages = APIRouter(include_in_schema=False)

SortParam = Annotated[
    Literal["latest", "size", "growth"],
    Query(
        description="latest activity, size (distinct sources), growth (sources in the last hour)"
    ),
]


@api.get("/events", response_model=EventPage, tags=["events"])
def list_events(
    session: SessionDep,
    since: Since = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="events with an article this full-text query matches (the alert "
            "rules' query language)",
        ),
    ] = None,
    min_sources: Annotated[
        int | None, Query(ge=1, le=100_000, description="at least this many distinct sources")
    ] = None,
    language: Annotated[
        str | None, Query(max_length=16, description="has an article in this language (en, de)")
    ] = None,
    source: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="carried by this source (its id)")
    ] = None,
    rule: Annotated[
        str | None, Query(max_length=100, description="matched by this alert rule")
    ] = None,
    hide_acknowledged: Annotated[
        bool, Query(description="leave out events someone acknowledged")
    ] = False,
    starred: Annotated[bool, Query(description="only starred events")] = False,
    sort: SortParam = "latest",
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> EventPage:
    """Events (groups of reports about one happening), by latest activity, size or growth."""
    return events.list_events(
        session,
        limit=cap_limit(limit),
        cursor=EventCursor.decode(cursor, sort),
        since=parse_since_param(since),
        q=search_query(q),  # a query that does not parse: 400 naming its column
        min_sources=min_sources,
        language=clean_text(language),
        source_id=source,
        rule=clean_text(rule),
        hide_acknowledged=hide_acknowledged,
        starred=starred,
        sort=sort,
    )


@api.get("/events/{event_id}", response_model=EventDetail, tags=["events"])
def event(session: SessionDep, event_id: Id) -> EventDetail:
    """One event with its articles (source, time, language, lead), why each joined, and its
    merges and splits.

    The id of an event merged into another answers with the surviving event (its `id` differs
    and `merged_from` lists the requested id)."""
    found = events.get_event(session, event_id)
    if found is None:
        raise not_found("event", event_id)
    return found


By = Annotated[
    str | None,
    Query(
        max_length=MAX_NAME,
        description="who sets the mark (recorded with its time); with a named token "
        "(NEWSWATCH_API_TOKENS) the token's name is recorded and `by`, if given, must be it",
    ),
]
WRITE_RESPONSES: dict[int | str, dict[str, object]] = {
    403: {"model": ErrorOut, "description": "a browser's write from another site"}
}


def who(request: Request, by: str | None) -> str | None:
    """Who sets a mark: the name of the request's token when it is a named one (a client
    cannot speak for another holder: a different `by` is refused), else the `by` given."""
    named = token_name(request)
    by = clean_text(by)
    if named is None:
        return by
    if by is not None and by != named:
        raise ApiError(
            400, f"by: this token is {named!r}'s; marks are recorded under its name", "by"
        )
    return named


def _write(request: Request, event_id: int, mark: Mark, on: bool, by: str | None) -> Triage:
    name = who(request, by)
    with session_scope(request.app.state.engine) as session:
        triage = events.set_mark(session, event_id, mark, on, name)
    if triage is None:
        raise not_found("event", event_id)
    return triage


def _add_mark_routes(mark: Mark, noun: str) -> None:
    """POST /api/events/{id}/<mark> sets the mark, DELETE undoes it."""
    common = {
        "response_model": Triage,
        "tags": ["triage"],
        "responses": WRITE_RESPONSES,
        "dependencies": [Depends(require_same_origin)],
    }

    def set_it(request: Request, event_id: Id, by: By = None) -> Triage:
        return _write(request, event_id, mark, True, by)

    def undo(request: Request, event_id: Id) -> Triage:
        return _write(request, event_id, mark, False, None)

    set_it.__doc__ = f"Mark the event {noun}; a merged-away id marks its survivor."
    undo.__doc__ = f"Undo: the event is no longer {noun}."
    api.post(f"/events/{{event_id}}/{mark}", name=f"{mark}_event", **common)(set_it)  # type: ignore[arg-type]
    api.delete(f"/events/{{event_id}}/{mark}", name=f"un{mark}_event", **common)(undo)  # type: ignore[arg-type]


_add_mark_routes("ack", "acknowledged (seen)")
_add_mark_routes("star", "starred")
_add_mark_routes("mute", "muted: its later growth sends no notification")


# --- pages -----------------------------------------------------------------------------------

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
PAGE_EVENTS = 50
ARTICLES_SHOWN = 30
TIMELINE_WIDTH = 240


@dataclass
class EventView:
    event: EventOut
    ticks: list[tuple[float, str]]  # x position in the timeline, label
    earlier: int  # reports before the timeline's start
    articles: list[tuple[object, str | None]]
    hidden: int  # articles not listed


@dataclass
class ListForm:
    """The events page's filters, as read from its URL: bad values mean no filter."""

    q: str = ""
    min_sources: int = 1
    language: str = ""
    source: int | None = None
    rule: str = ""
    sort: str = "latest"
    window: str = "24h"
    hide_acknowledged: bool = False
    limit: int = PAGE_EVENTS
    cursor: str = ""
    query: dict[str, str] = field(default_factory=dict)


def timeline(times: list[datetime], start: datetime, end: datetime) -> tuple[list, int]:
    """x positions (0..TIMELINE_WIDTH) of report times inside [start, end], and how many
    came before `start` (shown at the axis's left end)."""
    span = (end - start).total_seconds()
    ticks, earlier = [], 0
    for when in times:
        offset = (when - start).total_seconds()
        if offset < 0:
            earlier += 1
        elif offset <= span:
            x = round(offset / span * TIMELINE_WIDTH, 1)
            ticks.append((x, when.strftime("%Y-%m-%d %H:%M UTC")))
    return ticks, earlier


def _page_int(value: str | None, low: int, high: int) -> int | None:
    try:
        number = int(value or "")
    except ValueError:
        return None
    return number if low <= number <= high else None


def _choice(value: str | None, allowed: tuple[str, ...], default: str) -> str:
    return value if value is not None and value in allowed else default


def page_query(q: str) -> str:
    """The page's search box: a query that does not parse searches its words instead (the
    page's rule: a bad value is never an error page)."""
    try:
        compile_query(q) if q else None
    except QueryError:
        return " ".join(words(q))
    return q


def read_form(request: Request) -> ListForm:
    params = request.query_params
    form = ListForm(
        q=page_query(clean_text((params.get("q") or "")[:200]) or ""),
        min_sources=_page_int(params.get("min_sources"), 1, 100_000) or 1,
        language=(clean_text(params.get("language")) or "")[:16],
        source=_page_int(params.get("source"), 1, MAX_ID),
        rule=(clean_text(params.get("rule")) or "")[:100],
        sort=_choice(params.get("sort"), EVENT_SORTS, "latest"),
        window=_choice(params.get("window"), tuple(WINDOWS), "24h"),
        hide_acknowledged=params.get("hide_acknowledged") in ("1", "on", "true"),
        limit=_page_int(params.get("limit"), 1, MAX_LIMIT) or PAGE_EVENTS,
        cursor=(params.get("cursor") or "")[:200],
    )
    form.query = {
        k: str(v)
        for k, v in {
            "q": form.q,
            "min_sources": form.min_sources if form.min_sources > 1 else "",
            "language": form.language,
            "source": form.source or "",
            "rule": form.rule,
            "sort": form.sort if form.sort != "latest" else "",
            "window": form.window if form.window != "24h" else "",
            "hide_acknowledged": "1" if form.hide_acknowledged else "",
            "limit": form.limit if form.limit != PAGE_EVENTS else "",
        }.items()
        if v
    }
    return form


def _cursor(form: ListForm) -> EventCursor | None:
    try:
        return EventCursor.decode(form.cursor, form.sort)
    except ApiError:
        return None  # a stale or edited cursor on a page: start from the first page


def live_events(
    session: Session, now: datetime, form: ListForm
) -> tuple[list[EventView], str | None]:
    start = now - WINDOWS[form.window]
    page = events.list_events(
        session,
        limit=form.limit,
        cursor=_cursor(form),
        since=start,
        q=form.q or None,
        min_sources=form.min_sources if form.min_sources > 1 else None,
        language=form.language or None,
        source_id=form.source,
        rule=form.rule or None,
        hide_acknowledged=form.hide_acknowledged,
        sort=form.sort,  # type: ignore[arg-type]
    )
    articles = events.event_articles(session, [e.id for e in page.items])
    views = []
    for event in page.items:
        pairs = articles.get(event.id, [])
        ticks, earlier = timeline([events.report_time(a) for a, _ in pairs], start, now)
        shown = list(reversed(pairs))[:ARTICLES_SHOWN]  # newest first
        views.append(EventView(event, ticks, earlier, list(shown), len(pairs) - len(shown)))
    return views, page.next_cursor


@pages.get("/", response_class=HTMLResponse)
def live_page(request: Request, session: Session = Depends(get_session)) -> HTMLResponse:
    now = utcnow()
    form = read_form(request)
    views, next_cursor = live_events(session, now, form)
    # With no events to show, say when the cause may be the sources, not the news.
    failing, polled = polled_source_health(session) if not views else (0, 0)
    next_url = None
    if next_cursor:
        next_url = "?" + urlencode({**form.query, "cursor": next_cursor})
    return render(
        request,
        "events.html",
        now=now,
        events=views,
        failing=failing,
        polled=polled,
        width=TIMELINE_WIDTH,
        refresh=0 if form.cursor else 60,
        form=form,
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        next_url=next_url,
        first_url="?" + urlencode(form.query) if form.cursor else None,
        windows=list(WINDOWS),
        source_choices=[1, 2, 3, 5, 10],
        sources=event_views.source_names(session),
        languages=event_views.languages_since(session, now - WINDOWS[form.window]),
        rules=event_views.matched_rules(session),
    )


def fold_copies(articles: list[EventArticle]) -> list[tuple[EventArticle, list[EventArticle]]]:
    """Each original with its copies (near-duplicates) under it; a copy whose original is
    not in the event stands alone."""
    present = {a.id for a in articles}
    copies: dict[int, list[EventArticle]] = {}
    for a in articles:
        if a.duplicate_of is not None and a.duplicate_of in present:
            copies.setdefault(a.duplicate_of, []).append(a)
    return [
        (a, copies.get(a.id, []))
        for a in articles
        if a.duplicate_of is None or a.duplicate_of not in present
    ]


@pages.get("/events/{event_id}", response_class=HTMLResponse)
def event_page(
    request: Request, event_id: int, session: Session = Depends(get_session)
) -> HTMLResponse:
    detail = events.get_event(session, event_id) if 1 <= event_id <= MAX_ID else None
    if detail is None:
        raise ApiError(404, f"no event with id {event_id}", "event_id")
    return render(
        request, "event.html", event=detail, folded=fold_copies(detail.articles), nav="events"
    )


PAGE_ACTIONS: dict[str, tuple[Mark, bool]] = {
    **{mark: (mark, True) for mark in MARKS},
    **{f"un{mark}": (mark, False) for mark in MARKS},
}


@pages.post("/events/{event_id}/triage", dependencies=[Depends(require_same_origin)])
async def triage_form(request: Request, event_id: int) -> RedirectResponse:
    """The pages' triage buttons: a form with `action` (ack, unack, star, …) and `next`, the
    page to go back to."""
    body = parse_qs((await request.body()).decode("utf-8", "replace"))
    action = (body.get("action") or [""])[0]
    if action not in PAGE_ACTIONS:
        raise ApiError(400, f"action: {action!r} is not one of {', '.join(PAGE_ACTIONS)}", "action")
    if not 1 <= event_id <= MAX_ID:
        raise ApiError(404, f"no event with id {event_id}", "event_id")
    mark, on = PAGE_ACTIONS[action]
    await run_in_threadpool(_write, request, event_id, mark, on, None)
    back = (body.get("next") or [f"/events/{event_id}"])[0]
    return RedirectResponse(local_path(back), status_code=303)
