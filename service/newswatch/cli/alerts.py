"""`newswatch rules`, `newswatch silence` and `newswatch deliveries`."""

from __future__ import annotations

import json

import click
from sqlalchemy import select
from sqlmodel import Session

from newswatch.alerts import outbox
from newswatch.alerts.config import RuleConfig
from newswatch.alerts.engine import AlertEngine
from newswatch.alerts.models import Silence
from newswatch.alerts.query import QueryError, parse
from newswatch.cli.common import AppContext, parse_since, pass_app
from newswatch.durations import parse_duration
from newswatch.store.columns import utcnow
from newswatch.store.db import session_scope
from newswatch.store.models import Event


# --- rules ------------------------------------------------------------------------------
@click.group("rules")
def rules() -> None:
    """Alert rules from the config file."""


@rules.command("list")
@pass_app
def rules_list(app: AppContext) -> None:
    """The configured rules."""
    for rule in app.config.rules:
        window = f" within {rule.window}" if rule.window else ""
        click.echo(
            f"{rule.name}: {rule.query}  [min_sources {rule.min_sources}{window}; "
            f"channels {', '.join(rule.channels)}]"
        )


@rules.command("test")
@click.argument("name", required=False)
@click.option("--query", "-q", help="Test this query instead of a configured rule.")
@click.option("--min-sources", type=click.IntRange(1), default=1, show_default=True)
@click.option("--since", default="7d", show_default=True, help="age (24h, 7d) or ISO date")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@pass_app
def rules_test(
    app: AppContext,
    name: str | None,
    query: str | None,
    min_sources: int,
    since: str,
    as_json: bool,
) -> None:
    """Dry run over stored history: the events that would have fired and why. Sends nothing."""
    if (name is None) == (query is None):
        raise click.UsageError("give a rule NAME or --query, not both")
    if query is not None:
        try:
            parse(query)
        except QueryError as exc:
            raise click.BadParameter(str(exc), param_hint="--query") from None
        rule = RuleConfig(name="(query)", query=query, channels=["-"], min_sources=min_sources)
    else:
        found = [r for r in app.config.rules if r.name == name]
        if not found:
            raise click.ClickException(f"no rule named {name!r} in the config file")
        rule = found[0].model_copy(update={"enabled": True})
    engine = AlertEngine([rule], [])
    with session_scope(app.engine()) as session:
        firings = engine.dry_run(session, parse_since(since))
        titles = _titles(session, [f.event_id for f in firings])
    for f in firings:
        if as_json:
            click.echo(json.dumps({**f.__dict__, "title": titles.get(f.event_id)}))
        else:
            click.echo(
                f"event {f.event_id}: {titles.get(f.event_id) or '(untitled)'}\n"
                f"    {f.sources} sources; matched {', '.join(f.terms)}"
            )
    if not as_json:
        click.echo(f"{len(firings)} events would have fired", err=True)


def _titles(session: Session, ids: list[int]) -> dict[int, str | None]:
    if not ids:
        return {}
    rows = session.execute(select(Event.id, Event.title).where(Event.id.in_(ids)))  # type: ignore[attr-defined]
    return {r.id: r.title for r in rows}


# --- silences ---------------------------------------------------------------------------
@click.group("silence")
def silence() -> None:
    """Silences: no notifications for a rule (or all rules) until they expire."""


@silence.command("add")
@click.option("--rule", help="The rule to silence (default: every rule).")
@click.option("--for", "duration", required=True, help="How long: 30m, 8h, 2d.")
@click.option("--reason", help="Why (shown by silence list).")
@pass_app
def silence_add(app: AppContext, rule: str | None, duration: str, reason: str | None) -> None:
    try:
        length = parse_duration(duration)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--for") from None
    if rule is not None and rule not in {r.name for r in app.config.rules}:
        raise click.ClickException(f"no rule named {rule!r} in the config file")
    with session_scope(app.engine()) as session:
        row = Silence(rule=rule, until=utcnow() + length, reason=reason)
        session.add(row)
        session.flush()
        click.echo(f"silence {row.id}: {rule or 'all rules'} until {row.until:%Y-%m-%d %H:%M} UTC")


@silence.command("list")
@click.option("--all", "show_all", is_flag=True, help="Expired silences too.")
@pass_app
def silence_list(app: AppContext, show_all: bool) -> None:
    with session_scope(app.engine()) as session:
        query = select(Silence).order_by(Silence.until)  # type: ignore[arg-type]
        if not show_all:
            query = query.where(Silence.until > utcnow())  # type: ignore[arg-type]
        for s in session.execute(query).scalars():
            click.echo(
                f"{s.id}: {s.rule or 'all rules'} until {s.until:%Y-%m-%d %H:%M} UTC"
                + (f" ({s.reason})" if s.reason else "")
            )


@silence.command("remove")
@click.argument("silence_id", type=int)
@pass_app
def silence_remove(app: AppContext, silence_id: int) -> None:
    with session_scope(app.engine()) as session:
        row = session.get(Silence, silence_id)
        if row is None:
            raise click.ClickException(f"no silence with id {silence_id}")
        session.delete(row)
    click.echo(f"silence {silence_id} removed")


# --- deliveries -------------------------------------------------------------------------
@click.group("deliveries")
def deliveries() -> None:
    """Notifications in the outbox and what became of them."""


@deliveries.command("list")
@click.option("--failed", is_flag=True, help="Only dead ones and those waiting for a retry.")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@pass_app
def deliveries_list(app: AppContext, failed: bool, limit: int, as_json: bool) -> None:
    """Notifications, newest first."""
    with session_scope(app.engine()) as session:
        for n in outbox.list_deliveries(session, failed=failed, limit=limit):
            if as_json:
                click.echo(json.dumps(outbox.delivery_dict(n)))
                continue
            error = f"  {n.last_error}" if n.last_error else ""
            click.echo(
                f"{n.id:>6} {n.status:<8} {n.channel:<12} {n.rule:<16} event {n.event_id} "
                f"rev {n.revision} attempts {n.attempts}{error}"
            )


@deliveries.command("retry")
@click.argument("notification_id", type=int)
@pass_app
def deliveries_retry(app: AppContext, notification_id: int) -> None:
    """Send a dead (or waiting) notification again, now; the running service picks it up."""
    try:
        with session_scope(app.engine()) as session:
            outbox.retry_delivery(session, notification_id)
    except outbox.RetryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"notification {notification_id} queued again")


def register(main: click.Group) -> None:
    for group in (rules, silence, deliveries):
        main.add_command(group)
