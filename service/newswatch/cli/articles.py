"""`newswatch articles list`."""

from __future__ import annotations

import json

import click
from sqlmodel import Session, select

from newswatch.cli.common import AppContext, parse_since, pass_app
from newswatch.store.db import session_scope
from newswatch.store.models import Article, Sighting, Source


def article_row(a: Article, sources: list[str]) -> dict[str, object]:
    return {
        "id": a.id,
        "title": a.title,
        "url": a.url,
        "canonical_url": a.canonical_url,
        "guid": a.guid,
        "author": a.author,
        "language": a.language,
        "language_source": a.language_source,
        "published": a.published.isoformat() if a.published else None,
        "first_seen": a.first_seen.isoformat(),
        "event_id": a.event_id,
        "duplicate_of": a.duplicate_of,
        "sources": sources,
        "summary": a.summary,
        "text": a.text,
    }


def query_articles(
    session: Session,
    since=None,
    source: str | None = None,
    limit: int = 100,  # type: ignore[no-untyped-def]
) -> list[tuple[Article, list[str]]]:
    """Newest first; with the names of the sources that carried each article."""
    query = select(Article).order_by(Article.first_seen.desc(), Article.id.desc()).limit(limit)  # type: ignore[union-attr,attr-defined]
    if since is not None:
        query = query.where(Article.first_seen >= since)
    if source is not None:
        carried = select(Sighting.article_id).join(Source).where(Source.name == source)
        query = query.where(Article.id.in_(carried))  # type: ignore[union-attr]
    articles = session.exec(query).all()
    names: dict[int, list[str]] = {}
    ids = [a.id for a in articles]
    if ids:
        rows = session.exec(
            select(Sighting.article_id, Source.name)
            .join(Source)
            .where(Sighting.article_id.in_(ids))  # type: ignore[attr-defined]
        ).all()
        for article_id, name in rows:
            names.setdefault(article_id, []).append(name)
    return [(a, sorted(names.get(a.id, []))) for a in articles]  # type: ignore[arg-type]


@click.group("articles")
def articles() -> None:
    """Stored articles."""


@articles.command("list")
@click.option("--since", help="age (24h, 7d) or ISO date")
@click.option("--source", help="only articles carried by this source (name)")
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@pass_app
def list_articles(
    app: AppContext, since: str | None, source: str | None, limit: int, as_json: bool
) -> None:
    """List articles, newest first."""
    with session_scope(app.engine()) as session:
        rows = query_articles(session, parse_since(since), source, limit)
    for article, names in rows:
        if as_json:
            click.echo(json.dumps(article_row(article, names), ensure_ascii=False))
        else:
            when = (article.published or article.first_seen).strftime("%Y-%m-%d %H:%M")
            language = article.language or "-"
            click.echo(
                f"{article.id:>7} {when} {language:<3} [{', '.join(names)}] "
                f"{article.title or article.url}"
            )


def register(main: click.Group) -> None:
    main.add_command(articles)
