"""`newswatch articles list`."""

from __future__ import annotations

import json

import click

from newswatch.cli.common import AppContext, format_time, parse_since, pass_app
from newswatch.store.articles import query_articles
from newswatch.store.db import session_scope
from newswatch.store.models import Article


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


# The two clocks of an article: when its source says it was published (absent for some; the
# first-seen time stands in), and when newswatch first saw it.
CLOCKS = ("seen", "published")


@click.group("articles")
def articles() -> None:
    """Stored articles."""


@articles.command("list")
@click.option("--since", help="age (24h, 7d) or ISO date, on the clock of --by")
@click.option(
    "--by",
    type=click.Choice(CLOCKS),
    default="seen",
    show_default=True,
    help="the clock of --since and of the order: first seen by newswatch, or published "
    "(first seen where the source gives no date)",
)
@click.option("--source", help="only articles carried by this source (name)")
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@pass_app
def list_articles(
    app: AppContext, since: str | None, by: str, source: str | None, limit: int, as_json: bool
) -> None:
    """List articles, newest first on the clock of --by; times in UTC."""
    with session_scope(app.engine()) as session:
        rows = query_articles(session, parse_since(since), source, limit, by)
    if not as_json and rows:
        click.echo(f"{'id':>7}  {'published':16}  {'first seen':16}  {'lang':4}  [sources] title")
    for article, names in rows:
        if as_json:
            click.echo(json.dumps(article_row(article, names), ensure_ascii=False))
            continue
        published, seen = format_time(article.published), format_time(article.first_seen)
        language = article.language or "-"
        click.echo(
            f"{article.id:>7}  {published:16}  {seen:16}  {language:<4}  "
            f"[{', '.join(names)}] {article.title or article.url}"
        )


def register(main: click.Group) -> None:
    main.add_command(articles)
