"""`newswatch events export`: events as CSV or JSON Lines, with the filters of the API's
/api/events.csv, written as they are read."""

from __future__ import annotations

from typing import TextIO

import click

from newswatch.cli.articles import parse_query, source_id_named
from newswatch.cli.common import AppContext, parse_since, pass_app
from newswatch.exports import EVENT_COLUMNS, FORMATS, export_lines
from newswatch.store.db import session_scope
from newswatch.store.exports import EventFilter, iter_events


@click.command("export")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option(
    "--output",
    "-o",
    type=click.File("w", encoding="utf-8"),
    default="-",
    help="file to write (default: stdout)",
)
@click.option("--since", help="last activity within this age (24h, 7d) or since an ISO date")
@click.option("--query", "-q", help="only events with an article this query matches")
@click.option("--min-sources", type=click.IntRange(1), help="only events carried by N sources")
@click.option("--source", help="only events with an article this source carried (name or id)")
@click.option("--language", help="only events with an article in this language (e.g. en)")
@pass_app
def export(
    app: AppContext,
    fmt: str,
    output: TextIO,
    since: str | None,
    query: str | None,
    min_sources: int | None,
    source: str | None,
    language: str | None,
) -> None:
    """Open events, most recent activity first, as CSV (formula-like cells defused) or
    JSON Lines."""
    filters = EventFilter(
        q=parse_query(query, "--query") if query else None,
        since=parse_since(since),
        min_sources=min_sources,
        source_id=source_id_named(app, source),
        language=language,
    )
    with session_scope(app.engine()) as session:
        for chunk in export_lines(iter_events(session, filters), EVENT_COLUMNS, fmt):
            output.write(chunk)
