"""Shapes of the read API's answers (documented in the OpenAPI spec at /docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class SourceOut(BaseModel):
    id: int
    name: str
    url: str
    kind: str
    origin: str
    enabled: bool
    title: str | None = None
    interval_seconds: int | None = None
    cron: str | None = None
    last_fetch_at: datetime | None = None
    last_success_at: datetime | None = None
    last_status: int | None = None
    last_outcome: str | None = None
    last_error: str | None = None
    consecutive_errors: int = 0
    paused_reason: str | None = Field(
        None,
        description="why the source is not polled (410 Gone too often); "
        "`newswatch sources resume` or an edit of its config entry clears it",
    )
    next_fetch_at: datetime | None = None
    host_wait_seconds: float | None = Field(
        None, description="how long the last fetch waited for its host's turn (politeness)"
    )
    articles: int = Field(0, description="articles first seen at this source")
    fetches_24h: int = Field(0, description="fetches in the last 24 hours")
    errors_24h: int = Field(0, description="failed fetches in the last 24 hours")
    not_modified_24h: int = Field(0, description="304 answers in the last 24 hours")


class FetchOut(BaseModel):
    id: int
    started_at: datetime
    url: str
    status: int | None = None
    outcome: str
    bytes: int
    duration_ms: int
    entries: int
    new_articles: int
    error: str | None = None


class SourceDetail(SourceOut):
    recent_fetches: list[FetchOut] = []


class ArticleOut(BaseModel):
    id: int
    title: str | None = None
    url: str | None = None
    summary: str | None = None
    published: datetime | None = None
    first_seen: datetime
    language: str | None = Field(None, description="ISO 639 code, e.g. en, de, pt")
    language_source: str | None = Field(
        None, description="declared (by the feed or page) or detected (from the text)"
    )
    source_id: int | None = None
    source_name: str | None = None
    event_id: int | None = None
    duplicate_of: int | None = None


class SightingOut(BaseModel):
    source_id: int
    source_name: str
    first_seen: datetime
    entry_url: str | None = None


class ArticleDetail(ArticleOut):
    text: str | None = None
    author: str | None = None
    sightings: list[SightingOut] = []


class Page(BaseModel):
    """One page of a list; pass `next_cursor` as `cursor` for the next (null: last page)."""

    limit: int = Field(description="the page size applied (large values are capped)")
    next_cursor: str | None = None


class ArticlePage(Page):
    items: list[ArticleOut]


class SourceList(BaseModel):
    items: list[SourceOut]


class Mark(BaseModel):
    """A triage mark: when it was set and, when the writer named themselves, by whom."""

    at: datetime
    by: str | None = None


class Triage(BaseModel):
    event_id: int
    acknowledged: Mark | None = Field(None, description="someone has seen the event")
    starred: Mark | None = None
    muted: Mark | None = Field(None, description="its later growth does not notify")


class EventOut(BaseModel):
    id: int
    title: str | None = Field(
        None,
        description="the stored title, or the event's representative title when the stored "
        'one is generic ("(untitled)", "Post", "Home", …)',
    )
    stored_title: str | None = Field(None, description="the title the grouping stage stored")
    first_seen: datetime = Field(description="time of its earliest report (publication time)")
    last_seen: datetime = Field(description="time of its latest report (publication time)")
    article_count: int
    source_count: int
    growth: int | None = Field(
        None, description="distinct sources added in the last hour (lists only)"
    )
    top_entities: Any = None
    acknowledged: Mark | None = None
    starred: Mark | None = None
    muted: Mark | None = None


class EventPage(Page):
    sort: str = Field("latest", description="latest | size | growth")
    items: list[EventOut]


class EventArticle(ArticleOut):
    time: datetime | None = Field(
        None, description="the time the report counts at: publication, else first seen"
    )
    lead: str | None = Field(None, description="the first ~300 characters of its text")
    sources: list[str] = Field([], description="every source that carried this article")
    explanation: Any = Field(None, description="why the grouping put this article here")
    evidence: str | None = Field(None, description="the explanation in words")


class HistoryEntry(BaseModel):
    kind: str = Field(description="merged_in | split_off | split_from")
    event_id: int
    title: str | None = None
    at: datetime | None = None


class EventDetail(EventOut):
    merged_from: list[int] = Field([], description="events merged into this one")
    split_from: int | None = Field(
        None, description="the event these reports were split off (it held two events)"
    )
    split_off: list[int] = Field([], description="events split off this one")
    history: list[HistoryEntry] = Field([], description="merges and splits, oldest first")
    sources: list[str] = []
    articles: list[EventArticle] = []


class RuleOut(BaseModel):
    name: str
    query: str
    channels: list[str] = []
    options: dict[str, Any] = Field({}, description="the rule's other settings in the config")


class RuleList(BaseModel):
    items: list[RuleOut]


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str = Field(description="ready | not ready")
    checks: dict[str, dict[str, Any]]
    failed: list[str] = []


class ErrorDetail(BaseModel):
    status: int
    message: str
    parameter: str | None = Field(None, description="the request parameter at fault")
    problems: list[dict[str, Any]] | None = None


class ErrorOut(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "a parameter has a value that cannot be used"},
    401: {"model": ErrorOut, "description": "NEWSWATCH_API_TOKEN is set and was not given"},
    404: {"model": ErrorOut, "description": "no such item"},
    422: {"model": ErrorOut, "description": "a parameter does not match its type or limits"},
}
