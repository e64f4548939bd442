"""`newswatch run --role group`: the scaled mode's grouper, in the foreground."""

from __future__ import annotations

import signal
from types import FrameType

import click

from newswatch.cli.common import AppContext


def run_group_role(app: AppContext) -> None:
    """Group what fetch workers store, one process at a time (the others stand by); SIGTERM
    and SIGINT stop it after the batch in hand."""
    from newswatch.scaled.grouper import Grouper, GrouperOptions, NotScalable

    if app.settings.database_url.startswith("sqlite"):
        # Refused before the store is opened: no SQLite file is created or migrated for it.
        raise click.UsageError(
            "--role group runs on Postgres only (DATABASE_URL is sqlite); on SQLite run the "
            "single-process `newswatch run`"
        )
    options = GrouperOptions(
        batch=app.settings.grouper_batch, poll_seconds=app.settings.grouper_poll_seconds
    )
    try:
        grouper = Grouper(app.engine(), app.config, app.settings, options)
    except NotScalable as exc:
        raise click.UsageError(str(exc)) from None

    def stop(_signum: int, _frame: FrameType | None) -> None:
        grouper.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    grouper.run()
