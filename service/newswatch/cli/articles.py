"""`newswatch articles list|search|reindex`."""

from __future__ import annotations

import json

import click

from newswatch.alerts.query import QueryError
from newswatch.cli.common import AppContext, format_time, parse_since, pass_app
from newswatch.store.articles import query_articles
from newswatch.store.db import session_scope
from newswatch.store.models import Article
from newswatch.store.search import (
    ArticleFilter,
    ArticleRow,
    SearchQuery,
    compile_query,
    index_articles,
)
from newswatch.store.search import (
    list_articles as search_articles,
)
from newswatch.store.sources import find_source


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


def parse_query(query: str, hint: str = "QUERY") -> SearchQuery:
    """The query parsed, or a usage error that shows where it went wrong."""
    try:
        return compile_query(query)
    except QueryError as exc:
        pointer = " " * (exc.column - 1) + "^"
        raise click.BadParameter(f"{exc}\n  {query}\n  {pointer}", param_hint=hint) from None


def source_id_named(app: AppContext, name: str | None) -> int | None:
    """The id of the source called (or numbered) `name`; a usage error when there is none."""
    if name is None:
        return None
    with session_scope(app.engine()) as session:
        source = find_source(session, name)
    if source is None:
        raise click.BadParameter(f"no source {name!r}", param_hint="--source")
    return source.id


def _search_line(row: ArticleRow) -> str:
    seen = format_time(row.first_seen)
    return f"{row.id:>7}  {seen:16}  {row.language or '-':<4}  [{row.source_name or '-'}] " + (
        row.title or row.url or ""
    )


@articles.command("search")
@click.argument("query")
@click.option("--since", help="first seen within this age (24h, 7d) or since an ISO date")
@click.option("--source", help="only articles carried by this source (name or id)")
@click.option("--language", help="only articles in this language (e.g. en)")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@pass_app
def search(
    app: AppContext,
    query: str,
    since: str | None,
    source: str | None,
    language: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Articles matching QUERY, most recently stored first.

    QUERY is the alert rules' language: words, "phrases", prefix*, AND, OR, NOT (or
    -word), parentheses, and the fields title:, text:, source:, lang: (README, "Query
    language"). Matching ignores case and accents."""
    filters = ArticleFilter(
        q=parse_query(query),
        since=parse_since(since),
        source_id=source_id_named(app, source),
        language=language,
    )
    with session_scope(app.engine()) as session:
        rows, more = search_articles(session, filters, limit)
    for row in rows:
        if as_json:
            record = {
                k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in vars(row).items()
            }
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            click.echo(_search_line(row))
    if more and not as_json:
        click.echo(f"(more than {limit}: raise --limit or narrow the query)", err=True)


@articles.command("reindex")
@click.option("--all", "everything", is_flag=True, help="Rebuild every article's entry.")
@pass_app
def reindex(app: AppContext, everything: bool) -> None:
    """Index for search the articles that are not indexed yet: those written without
    newswatch (SQL), or whose title or text was changed (the change drops the entry)."""
    with session_scope(app.engine()) as session:
        count = index_articles(session, rebuild=everything)
    click.echo(f"indexed {count} articles")


def register(main: click.Group) -> None:
    main.add_command(articles)
