"""`newswatch events list|show`: the same queries as the read API."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import click

from newswatch.alerts.query import QueryError
from newswatch.api.events import (
    KEPT_OUT_OF_IT,
    KEPT_OUT_OF_THIS,
    get_event,
    list_events,
    near_events,
)
from newswatch.api.schemas import EventDetail
from newswatch.cli.common import AppContext, format_time, parse_since, pass_app
from newswatch.store.db import session_scope
from newswatch.store.event_views import Sort
from newswatch.store.search import compile_query


@click.group("events")
def events() -> None:
    """Events: reports about the same happening, grouped."""


@events.command("list")
@click.option("--since", help="last activity within this age (24h, 7d) or since an ISO date")
@click.option("--min-sources", type=click.IntRange(1), help="only events carried by N sources")
@click.option(
    "--query",
    "-q",
    help="events with an article this full-text query matches (the alert rules' language)",
)
@click.option(
    "--sort",
    type=click.Choice(["latest", "size", "growth"]),
    default="latest",
    show_default=True,
    help="latest activity, distinct sources, or sources added in the last hour",
)
@click.option("--language", help="has an article in this language (en, de)")
@click.option("--source", "source_id", type=click.IntRange(1), help="carried by this source id")
@click.option("--rule", help="matched by this alert rule")
@click.option("--hide-acknowledged", is_flag=True, help="leave out events marked seen")
@click.option("--starred", is_flag=True, help="only starred events")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@pass_app
def list_command(
    app: AppContext,
    since: str | None,
    min_sources: int | None,
    query: str | None,
    sort: Sort,
    language: str | None,
    source_id: int | None,
    rule: str | None,
    hide_acknowledged: bool,
    starred: bool,
    limit: int,
    as_json: bool,
) -> None:
    """Events, most recent activity first (or by size or growth)."""
    try:
        parsed = compile_query(query) if query else None
    except QueryError as exc:
        raise click.BadParameter(str(exc), param_hint="--query") from None
    with session_scope(app.engine()) as session:
        page = list_events(
            session,
            limit=limit,
            since=parse_since(since),
            q=parsed,
            min_sources=min_sources,
            language=language,
            source_id=source_id,
            rule=rule,
            hide_acknowledged=hide_acknowledged,
            starred=starred,
            sort=sort,
        )
    for event in page.items:
        if as_json:
            click.echo(event.model_dump_json())
            continue
        click.echo(
            f"{event.id:>8}  {format_time(event.last_seen)}  {event.source_count:>3} sources "
            f"{event.article_count:>4} articles  {event.title or '(no title)'}"
        )


@events.command("show")
@click.argument("event_id", type=int)
@click.option("--explain", is_flag=True, help="Why each article joined the event.")
@click.option("--json", "as_json", is_flag=True, help="The event as one JSON object.")
@pass_app
def show_command(app: AppContext, event_id: int, explain: bool, as_json: bool) -> None:
    """One event: its members, sources and timeline (a merged-away id shows its survivor)."""
    with session_scope(app.engine()) as session:
        event = get_event(session, event_id)
    if event is None:
        raise click.ClickException(f"no event with id {event_id}")
    if as_json:
        click.echo(event.model_dump_json())
        return
    _print_event(event, requested=event_id, explain=explain)


def _print_event(event: EventDetail, *, requested: int, explain: bool) -> None:
    if event.id != requested:
        click.echo(f"event {requested} was merged into {event.id}")
    click.echo(f"event {event.id}: {event.title or '(no title)'}")
    click.echo(
        f"  first seen {format_time(event.first_seen)}, last seen {format_time(event.last_seen)}"
    )
    click.echo(f"  {event.article_count} articles from {event.source_count} sources")
    if event.top_entities:
        click.echo(f"  entities: {', '.join(map(str, event.top_entities))}")
    if event.merged_from:
        click.echo(f"  merged from: {', '.join(map(str, event.merged_from))}")
    if event.split_from is not None:
        click.echo(f"  split off event {event.split_from}: a different event of the same kind")
    if event.split_off:
        click.echo(f"  events split off this one: {', '.join(map(str, event.split_off))}")
    click.echo("  timeline:")
    for article in event.articles:
        when = format_time(article.published or article.first_seen)
        sources = ", ".join(article.sources) or article.source_name or "-"
        language = article.language or "-"
        click.echo(f"    {when}  {language:<3} [{sources}]  {article.title or '(no title)'}")
        if article.url:
            click.echo(f"        {article.url}")
        if explain:
            click.echo(f"        why: {_explain(article.explanation)}")


def _explain(explanation: object) -> str:
    if not isinstance(explanation, dict):
        return "not recorded"
    stage = explanation.get("stage")
    score = explanation.get("score")
    parts = {
        "new": "opened the event",
        "similar": f"similar to the event (score {score})",
        "duplicate": f"near-duplicate of article {explanation.get('duplicate_of')} "
        f"(estimated Jaccard {score})",
    }
    text = parts.get(str(stage), json.dumps(explanation))
    shared = explanation.get("shared_entities")
    if shared:
        text += f"; shared entities: {', '.join(shared)}"
    specific = explanation.get("evidence")
    if specific:
        text += f"; specific evidence (rare in the window): {', '.join(map(str, specific))}"
    elif stage == "similar":
        text += "; no specific evidence shared (joined on wording)"
    for near in explanation.get("near") or []:
        if isinstance(near, dict):
            text += (
                f"; kept out of event {near.get('event')} (score {near.get('score')}): "
                f"{near.get('reason')}"
            )
    if explanation.get("merged"):
        text += f"; merged events {', '.join(map(str, explanation['merged']))} into it"
    split = explanation.get("split")
    if isinstance(split, dict):
        text += (
            f"; with it the event proved to hold two (normalised cut {split.get('ncut')}): "
            f"{split.get('moved')} articles split off into event {split.get('new_event')}"
        )
    return text


@events.command("near")
@click.argument("event_id", type=int)
@click.option(
    "--limit", type=click.IntRange(1, 100), default=10, show_default=True, help="Events each way."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@pass_app
def near_command(app: AppContext, event_id: int, limit: int, as_json: bool) -> None:
    """The closest events grouping kept apart from EVENT_ID, both ways: those its articles
    were kept out of, and those whose articles were kept out of it, with the scores and the
    reasons (a veto on different subjects, or a score below the threshold). The second
    direction reads the articles within the configured grouping window of the event (a
    window made smaller since they were grouped hides the farther ones)."""
    window = timedelta(hours=app.config.grouping.window_hours)
    with session_scope(app.engine()) as session:
        near = near_events(session, event_id, window=window, limit=limit)
    if near is None:
        raise click.ClickException(f"no event with id {event_id}")
    if as_json:
        for n in near:
            click.echo(json.dumps(dataclasses.asdict(n)))
        return
    if not near:
        click.echo(f"event {event_id}: no rejected candidate events recorded")
        return
    headings = {
        KEPT_OUT_OF_IT: f"events the articles of event {event_id} were kept out of:",
        KEPT_OUT_OF_THIS: f"events whose articles were kept out of event {event_id}:",
    }
    for direction, heading in headings.items():
        shown = [n for n in near if n.direction == direction]
        if not shown:
            continue
        click.echo(heading)
        for n in shown:
            kept = f"{n.articles} article{'' if n.articles == 1 else 's'}"
            click.echo(f"  {n.score:6.3f}  event {n.event_id:>8}  {n.title or '(no title)'}")
            click.echo(f"          {n.reason} ({kept} kept out)")


def register(main: click.Group) -> None:
    from newswatch.cli.export import export  # imports this module: registered here

    events.add_command(export)
    main.add_command(events)
