"""Articles under /api/: the list with full-text search, and the exports of articles and
events as CSV and JSON Lines (streamed, a chunk of rows at a time)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlmodel import Session

from newswatch.alerts.query import QueryError
from newswatch.api.errors import bad_parameter
from newswatch.api.params import DEFAULT_LIMIT, MAX_ID, Cursor, cap_limit, clean_text
from newswatch.api.params import parse_since as parse_since_param
from newswatch.api.routes import CursorParam, Limit, SessionDep, Since, bearer
from newswatch.api.schemas import ERROR_RESPONSES, ArticleOut, ArticlePage
from newswatch.exports import ARTICLE_COLUMNS, EVENT_COLUMNS, MEDIA_TYPES, export_lines
from newswatch.store.exports import EventFilter, iter_events
from newswatch.store.search import (
    ArticleFilter,
    Position,
    SearchQuery,
    compile_query,
    iter_articles,
    list_articles,
)

router = APIRouter(prefix="/api", dependencies=[Depends(bearer)], responses=ERROR_RESPONSES)

QUERY_HELP = (
    'full-text query in the alert rules\' language: words, "phrases", prefix*, AND/OR/NOT '
    "(or -word), parentheses, fields title: text: source: lang: (README: Search and export)"
)
TextQuery = Annotated[str | None, Query(max_length=1000, description=QUERY_HELP)]
SourceId = Annotated[
    int | None, Query(ge=1, le=MAX_ID, description="only articles this source carried")
]
Language = Annotated[
    str | None, Query(max_length=16, description="only articles in this language (e.g. en)")
]


def search_query(q: str | None, parameter: str = "q") -> SearchQuery | None:
    """The parsed query, or a 400 naming the parameter and the column of the problem."""
    cleaned = clean_text(q)
    if cleaned is None:
        return None
    try:
        return compile_query(cleaned)
    except QueryError as exc:
        raise bad_parameter(parameter, str(exc)) from None


def _article_filter(
    q: str | None,
    since: str | None,
    source: int | None,
    language: str | None,
    event: int | None = None,
) -> ArticleFilter:
    return ArticleFilter(
        q=search_query(q),
        since=parse_since_param(since),
        source_id=source,
        event_id=event,
        language=clean_text(language),
    )


@router.get("/articles", response_model=ArticlePage, tags=["articles"])
def articles(
    session: SessionDep,
    since: Since = None,
    q: TextQuery = None,
    source: SourceId = None,
    event: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="only articles of this event")
    ] = None,
    language: Language = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> ArticlePage:
    """Articles, most recently first seen first; with `q`, the articles the query matches,
    most recently stored first."""
    filters = _article_filter(q, since, source, language, event)
    after = Cursor.decode(cursor)
    limit = cap_limit(limit)
    rows, more = list_articles(
        session, filters, limit, Position(after.at, after.id) if after else None
    )
    items = [ArticleOut(**asdict(r)) for r in rows]
    next_cursor = Cursor(rows[-1].first_seen, rows[-1].id).encode() if more else None
    return ArticlePage(items=items, limit=limit, next_cursor=next_cursor)


def _stream(lines: Iterator[str], fmt: str, name: str) -> StreamingResponse:
    return StreamingResponse(
        lines,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )


def _export_articles(request: Request, filters: ArticleFilter, fmt: str) -> StreamingResponse:
    def lines() -> Iterator[str]:
        # A session of its own, open while the response streams (the request's closes when
        # the handler returns).
        with Session(request.app.state.engine) as session:
            yield from export_lines(iter_articles(session, filters), ARTICLE_COLUMNS, fmt)

    return _stream(lines(), fmt, "articles")


@router.get("/articles.csv", tags=["export"], response_class=StreamingResponse)
def articles_csv(
    request: Request,
    since: Since = None,
    q: TextQuery = None,
    source: SourceId = None,
    language: Language = None,
) -> StreamingResponse:
    """Every article the filters select (those of /api/articles) as CSV, streamed."""
    return _export_articles(request, _article_filter(q, since, source, language), "csv")


@router.get("/articles.jsonl", tags=["export"], response_class=StreamingResponse)
def articles_jsonl(
    request: Request,
    since: Since = None,
    q: TextQuery = None,
    source: SourceId = None,
    language: Language = None,
) -> StreamingResponse:
    """Every article the filters select as JSON Lines (one object a line), streamed."""
    return _export_articles(request, _article_filter(q, since, source, language), "jsonl")


MinSources = Annotated[
    int | None, Query(ge=1, le=10_000, description="only events with this many sources")
]


def _event_filter(
    q: str | None,
    since: str | None,
    min_sources: int | None,
    source: int | None,
    language: str | None,
) -> EventFilter:
    return EventFilter(
        q=search_query(q),
        since=parse_since_param(since),
        min_sources=min_sources,
        source_id=source,
        language=clean_text(language),
    )


def _export_events(request: Request, filters: EventFilter, fmt: str) -> StreamingResponse:
    def lines() -> Iterator[str]:
        with Session(request.app.state.engine) as session:
            yield from export_lines(iter_events(session, filters), EVENT_COLUMNS, fmt)

    return _stream(lines(), fmt, "events")


@router.get("/events.csv", tags=["export"], response_class=StreamingResponse)
def events_csv(
    request: Request,
    since: Since = None,
    q: TextQuery = None,
    min_sources: MinSources = None,
    source: SourceId = None,
    language: Language = None,
) -> StreamingResponse:
    """Open events the filters select, most recent activity first, as CSV, streamed. `q`
    keeps events with an article the query matches."""
    filters = _event_filter(q, since, min_sources, source, language)
    return _export_events(request, filters, "csv")


@router.get("/events.jsonl", tags=["export"], response_class=StreamingResponse)
def events_jsonl(
    request: Request,
    since: Since = None,
    q: TextQuery = None,
    min_sources: MinSources = None,
    source: SourceId = None,
    language: Language = None,
) -> StreamingResponse:
    """Open events the filters select as JSON Lines, streamed."""
    filters = _event_filter(q, since, min_sources, source, language)
    return _export_events(request, filters, "jsonl")
