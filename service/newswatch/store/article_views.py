"""The store's reads of articles for the API, the pages and the CLI."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from newswatch.store.models import Sighting, Source


def sightings_of(session: Session, article_id: int) -> Sequence[tuple[Sighting, str]]:
    """Every source that carried the article, first carrier first, with its name."""
    return session.exec(
        select(Sighting, Source.name)
        .join(Source, col(Sighting.source_id) == Source.id)
        .where(Sighting.article_id == article_id)
        .order_by(col(Sighting.first_seen))
    ).all()
