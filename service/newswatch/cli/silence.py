"""`newswatch silence add|list|remove`: no notifications for a rule until the silence ends."""

from __future__ import annotations

import click

from newswatch.alerts.silences import (
    add_silence,
    list_silences,
    remove_silence,
    suppressed_counts,
)
from newswatch.cli.common import AppContext, pass_app
from newswatch.durations import parse_duration
from newswatch.store.alert_models import Silence
from newswatch.store.db import session_scope


@click.group("silence")
def silence() -> None:
    """Silences: no notifications for a rule (or all rules) until they expire."""


def _line(s: Silence) -> str:
    reason = f" ({s.reason})" if s.reason else ""
    return f"{s.id}: {s.rule or 'all rules'} until {s.until:%Y-%m-%d %H:%M} UTC{reason}"


@silence.command("add")
@click.option("--rule", help="The rule to silence (default: every rule).")
@click.option("--for", "duration", required=True, help="How long: 30m, 8h, 2d.")
@click.option("--reason", help="Why (shown by silence list).")
@pass_app
def silence_add(app: AppContext, rule: str | None, duration: str, reason: str | None) -> None:
    """Silence a rule (or every rule) from now on for a while."""
    try:
        length = parse_duration(duration)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--for") from None
    if rule is not None and rule not in {r.name for r in app.config.rules}:
        raise click.ClickException(f"no rule named {rule!r} in the config file")
    with session_scope(app.engine()) as session:
        try:
            row = add_silence(session, rule, length, reason)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--for") from None
        click.echo(f"silence {_line(row)}")


@silence.command("list")
@click.option("--all", "show_all", is_flag=True, help="Expired silences too.")
@pass_app
def silence_list(app: AppContext, show_all: bool) -> None:
    """Silences in force, soonest to end first; then what they suppressed."""
    with session_scope(app.engine()) as session:
        for row in list_silences(session, expired=show_all):
            click.echo(_line(row))
        counts = suppressed_counts(session)
    for rule, count in sorted(counts.items()):
        click.echo(f"{rule}: {count} events suppressed (not notified)", err=True)


@silence.command("remove")
@click.argument("silence_id", type=int)
@pass_app
def silence_remove(app: AppContext, silence_id: int) -> None:
    """End a silence now."""
    with session_scope(app.engine()) as session:
        if not remove_silence(session, silence_id):
            raise click.ClickException(f"no silence with id {silence_id}")
    click.echo(f"silence {silence_id} removed")


def register(main: click.Group) -> None:
    main.add_command(silence)
