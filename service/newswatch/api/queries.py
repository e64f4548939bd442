"""Reads behind the API and the pages; plain functions over a Session, so the CLI can call
them too. They return the API's pydantic models; the SQL is the store's (store/*_views.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from newswatch.api.schemas import (
    ArticleDetail,
    FetchOut,
    SightingOut,
    SourceDetail,
    SourceOut,
)
from newswatch.shared_types import FetchOutcome
from newswatch.store import article_views, source_views
from newswatch.store.models import Article, Source

RECENT_FETCHES = 20


# --- sources ---------------------------------------------------------------------------------


def _source_out(
    source: Source, fetches: dict[str, int], articles: int, model: type[SourceOut] = SourceOut
) -> SourceOut:
    errors = sum(
        n
        for outcome, n in fetches.items()
        if outcome not in (FetchOutcome.OK, FetchOutcome.NOT_MODIFIED)
    )
    return model(
        **source.model_dump(exclude={"options", "configured_url", "etag", "last_modified"}),
        articles=articles,
        fetches_24h=sum(fetches.values()),
        errors_24h=errors,
        not_modified_24h=fetches.get(FetchOutcome.NOT_MODIFIED, 0),
    )


def list_sources(session: Session, *, in_error: bool | None = None) -> list[SourceOut]:
    """Every source with its fetch state; failing sources first when `in_error` is None."""
    sources = source_views.sources_by_name(session, in_error=in_error)
    fetches = source_views.fetch_counts(session, datetime.now(UTC) - timedelta(hours=24))
    articles = source_views.article_counts(session)
    out = [_source_out(s, fetches.get(s.id, {}), articles.get(s.id, 0)) for s in sources]
    out.sort(key=lambda s: (s.consecutive_errors == 0, not s.enabled, s.name.lower()))
    return out


def get_source(session: Session, source_id: int) -> SourceDetail | None:
    source = session.get(Source, source_id)
    if source is None:
        return None
    since = datetime.now(UTC) - timedelta(hours=24)
    fetches = source_views.fetch_counts(session, since).get(source_id, {})
    articles = source_views.articles_carried(session, source_id)
    detail = _source_out(source, fetches, articles, SourceDetail)
    recent = source_views.recent_fetches(session, source_id, RECENT_FETCHES)
    assert isinstance(detail, SourceDetail)
    detail.recent_fetches = [FetchOut(**f.model_dump()) for f in recent]
    return detail


# --- articles --------------------------------------------------------------------------------


def get_article(session: Session, article_id: int) -> ArticleDetail | None:
    article = session.get(Article, article_id)
    if article is None:
        return None
    source = session.get(Source, article.source_id) if article.source_id else None
    sightings = article_views.sightings_of(session, article_id)
    return ArticleDetail(
        **article.model_dump(),
        source_name=source.name if source else None,
        sightings=[
            SightingOut(
                source_id=s.source_id,
                source_name=name,
                first_seen=s.first_seen,
                entry_url=s.entry_url,
            )
            for s, name in sightings
        ],
    )
