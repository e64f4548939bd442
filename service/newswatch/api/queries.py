"""Read queries behind the API and the pages; plain functions over a Session, so the CLI can
call them too. They return the API's pydantic models."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, or_
from sqlmodel import Session, col, select

from newswatch.api.params import Cursor, like_pattern
from newswatch.api.schemas import (
    ArticleDetail,
    ArticleOut,
    ArticlePage,
    FetchOut,
    SightingOut,
    SourceDetail,
    SourceOut,
)
from newswatch.fetch.http import NOT_MODIFIED, OK
from newswatch.store.models import Article, Fetch, Sighting, Source

RECENT_FETCHES = 20


# --- sources ---------------------------------------------------------------------------------


def _fetch_counts(session: Session, since: datetime) -> dict[int | None, dict[str, int]]:
    rows = session.exec(
        select(Fetch.source_id, Fetch.outcome, func.count())
        .where(col(Fetch.started_at) >= since)
        .group_by(col(Fetch.source_id), col(Fetch.outcome))
    ).all()
    counts: dict[int | None, dict[str, int]] = defaultdict(dict)
    for source_id, outcome, n in rows:
        counts[source_id][outcome] = n
    return counts


def _article_counts(session: Session) -> dict[int | None, int]:
    rows = session.exec(
        select(Sighting.source_id, func.count()).group_by(col(Sighting.source_id))
    ).all()
    return dict(rows)


def _source_out(
    source: Source, fetches: dict[str, int], articles: int, model: type[SourceOut] = SourceOut
) -> SourceOut:
    errors = sum(n for outcome, n in fetches.items() if outcome not in (OK, NOT_MODIFIED))
    return model(
        **source.model_dump(exclude={"options", "configured_url", "etag", "last_modified"}),
        articles=articles,
        fetches_24h=sum(fetches.values()),
        errors_24h=errors,
        not_modified_24h=fetches.get(NOT_MODIFIED, 0),
    )


def list_sources(session: Session, *, in_error: bool | None = None) -> list[SourceOut]:
    """Every source with its fetch state; failing sources first when `in_error` is None."""
    query = select(Source)
    if in_error is True:
        query = query.where(Source.consecutive_errors > 0)
    elif in_error is False:
        query = query.where(Source.consecutive_errors == 0)
    sources = session.exec(query.order_by(Source.name)).all()
    fetches = _fetch_counts(session, datetime.now(UTC) - timedelta(hours=24))
    articles = _article_counts(session)
    out = [_source_out(s, fetches.get(s.id, {}), articles.get(s.id, 0)) for s in sources]
    out.sort(key=lambda s: (s.consecutive_errors == 0, not s.enabled, s.name.lower()))
    return out


def get_source(session: Session, source_id: int) -> SourceDetail | None:
    source = session.get(Source, source_id)
    if source is None:
        return None
    since = datetime.now(UTC) - timedelta(hours=24)
    fetches = _fetch_counts(session, since).get(source_id, {})
    articles = session.exec(
        select(func.count()).select_from(Sighting).where(Sighting.source_id == source_id)
    ).one()
    detail = _source_out(source, fetches, articles, SourceDetail)
    recent = session.exec(
        select(Fetch)
        .where(Fetch.source_id == source_id)
        .order_by(col(Fetch.started_at).desc(), col(Fetch.id).desc())
        .limit(RECENT_FETCHES)
    ).all()
    assert isinstance(detail, SourceDetail)
    detail.recent_fetches = [FetchOut(**f.model_dump()) for f in recent]
    return detail


# --- articles --------------------------------------------------------------------------------


def _article_out(article: Article, source_name: str | None) -> ArticleOut:
    return ArticleOut(**article.model_dump(), source_name=source_name)


def list_articles(
    session: Session,
    *,
    limit: int,
    cursor: Cursor | None = None,
    since: datetime | None = None,
    q: str | None = None,
    source_id: int | None = None,
    event_id: int | None = None,
) -> ArticlePage:
    """Articles, newest first seen first."""
    query = select(Article, Source.name).join(
        Source,
        col(Article.source_id) == Source.id,
        isouter=True,
    )
    if since is not None:
        query = query.where(Article.first_seen >= since)
    if q:
        pattern = like_pattern(q)
        query = query.where(
            or_(
                col(Article.title).ilike(pattern, escape="\\"),
                col(Article.summary).ilike(pattern, escape="\\"),
            )
        )
    if source_id is not None:
        carried = select(Sighting.article_id).where(Sighting.source_id == source_id)
        query = query.where(col(Article.id).in_(carried))
    if event_id is not None:
        query = query.where(Article.event_id == event_id)
    if cursor is not None:
        query = query.where(
            or_(
                col(Article.first_seen) < cursor.at,
                and_(col(Article.first_seen) == cursor.at, col(Article.id) < cursor.id),
            )
        )
    rows = session.exec(
        query.order_by(col(Article.first_seen).desc(), col(Article.id).desc()).limit(limit + 1)
    ).all()
    items = [_article_out(a, name) for a, name in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = Cursor(last.first_seen, last.id).encode()
    return ArticlePage(items=items, limit=limit, next_cursor=next_cursor)


def get_article(session: Session, article_id: int) -> ArticleDetail | None:
    article = session.get(Article, article_id)
    if article is None:
        return None
    source = session.get(Source, article.source_id) if article.source_id else None
    sightings = session.exec(
        select(Sighting, Source.name)
        .join(Source, col(Sighting.source_id) == Source.id)
        .where(Sighting.article_id == article_id)
        .order_by(col(Sighting.first_seen))
    ).all()
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
