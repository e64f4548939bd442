"""The store's reads of articles for the API, the pages and the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from newswatch.store.event_views import like_pattern
from newswatch.store.models import Article, Sighting, Source


@dataclass(frozen=True)
class ArticleFilter:
    since: datetime | None = None
    q: str | None = None
    source_id: int | None = None
    event_id: int | None = None


def list_articles(
    session: Session,
    filters: ArticleFilter,
    *,
    limit: int,
    after: tuple[datetime, int] | None = None,
) -> Sequence[tuple[Article, str | None]]:
    """Articles, most recently first seen first, each with the name of the source that first
    had it; `after` is the (first_seen, id) the previous page ended at."""
    query = select(Article, Source.name).join(
        Source, col(Article.source_id) == Source.id, isouter=True
    )
    if filters.since is not None:
        query = query.where(Article.first_seen >= filters.since)
    if filters.q:
        pattern = like_pattern(filters.q)
        query = query.where(
            or_(
                col(Article.title).ilike(pattern, escape="\\"),
                col(Article.summary).ilike(pattern, escape="\\"),
            )
        )
    if filters.source_id is not None:
        carried = select(Sighting.article_id).where(Sighting.source_id == filters.source_id)
        query = query.where(col(Article.id).in_(carried))
    if filters.event_id is not None:
        query = query.where(Article.event_id == filters.event_id)
    if after is not None:
        at, last_id = after
        query = query.where(
            or_(
                col(Article.first_seen) < at,
                and_(col(Article.first_seen) == at, col(Article.id) < last_id),
            )
        )
    order = (col(Article.first_seen).desc(), col(Article.id).desc())
    return session.exec(query.order_by(*order).limit(limit)).all()


def sightings_of(session: Session, article_id: int) -> Sequence[tuple[Sighting, str]]:
    """Every source that carried the article, first carrier first, with its name."""
    return session.exec(
        select(Sighting, Source.name)
        .join(Source, col(Sighting.source_id) == Source.id)
        .where(Sighting.article_id == article_id)
        .order_by(col(Sighting.first_seen))
    ).all()
