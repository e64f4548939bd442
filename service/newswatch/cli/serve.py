"""`newswatch serve`: the HTTP API and pages alone, over an existing store."""

from __future__ import annotations

import asyncio

import click

from newswatch.cli.common import AppContext, pass_app
from newswatch.lifecycle import stop_on_signal


async def _serve_until_signal(app_ctx: AppContext, host: str, port: int) -> None:
    from newswatch.api import create_app, serve
    from newswatch.store.db import bounded_engine

    stop = asyncio.Event()
    with stop_on_signal(stop):
        # Read-only use: the schema is not migrated here; /readyz reports a stale one.
        settings = app_ctx.settings
        engine = bounded_engine(
            app_ctx.engine(migrate=False),
            settings.api_max_concurrent,
            settings.api_statement_timeout,
        )
        app = create_app(engine, settings, config=app_ctx.config)
        await serve(app, host, port, stop)


@click.command("serve")
@click.option("--host", help="address to listen on [env: NEWSWATCH_HTTP_HOST, default 0.0.0.0]")
@click.option("--port", type=click.IntRange(0, 65535), help="[env: NEWSWATCH_HTTP_PORT, 8080]")
@pass_app
def serve_command(app: AppContext, host: str | None, port: int | None) -> None:
    """Serve health, metrics, the read API and the live pages over an existing store."""
    settings = app.settings
    try:
        asyncio.run(
            _serve_until_signal(
                app,
                host or settings.http_host,
                settings.http_port if port is None else port,
            )
        )
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None


def register(main: click.Group) -> None:
    main.add_command(serve_command)
