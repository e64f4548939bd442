"""`newswatch deliveries` (rules and silences: cli/rules.py, cli/silence.py)."""

from __future__ import annotations

import json

import click

from newswatch.cli.common import AppContext, pass_app
from newswatch.store import outbox
from newswatch.store.db import session_scope


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
    main.add_command(deliveries)
