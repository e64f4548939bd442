"""`newswatch serve` and `newswatch run --role api`: the HTTP API and pages alone, over an
existing store, reading only. `run` starts the same code as its API process
(api/process.py), given the probe front's hand-over socket, the heartbeats, the scheduler's
status board and the service's metrics channel."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import TYPE_CHECKING

import click

from newswatch.cli.common import AppContext, pass_app
from newswatch.lifecycle import skip_final_collection, stop_on_signal

if TYPE_CHECKING:
    from newswatch.api.process import ChildLink

# One event loop answers /healthz and hands requests to worker threads that read the store
# and render: a thread waiting for the GIL waits up to the switch interval, and the loop
# waits again after every socket call (under API load, dozens per turn of the loop). 0.5 ms
# instead of CPython's 5 keeps /healthz fast while the workers are busy
# (docs/decisions/0081-api-load-isolation.md; 1 ms before decision 0086).
LOOP_SWITCH_INTERVAL = 0.0005


def serve_api(app_ctx: AppContext, host: str, port: int, child: ChildLink | None = None) -> None:
    """Serve until SIGTERM/SIGINT; as the API process of `run` when `child` is given (bound
    to the service already: lifecycle.bind_to_parent)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(LOOP_SWITCH_INTERVAL)
    try:
        asyncio.run(_serve_until_signal(app_ctx, host, port, child))
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    finally:  # a command run in-process (the tests) leaves the interpreter as it found it
        sys.setswitchinterval(previous)
    skip_final_collection()


async def _serve_until_signal(
    app_ctx: AppContext, host: str, port: int, child: ChildLink | None
) -> None:
    from newswatch.api import create_app, serve
    from newswatch.api.liveness import API, Heartbeats, beat_forever, checker
    from newswatch.api.process import ParentMetrics
    from newswatch.status_board import BoardStatus, StatusBoard
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
        if child is None:
            app = create_app(engine, settings, config=app_ctx.config)
            await serve(app, host, port, stop)
            return
        beats = Heartbeats(child.heartbeats_fd)
        app = create_app(
            engine,
            settings,
            config=app_ctx.config,
            status=BoardStatus(StatusBoard(child.status_fd, writable=False)),
            service_metrics=ParentMetrics(child.metrics_fd).fetch,
            liveness=checker(beats, settings.liveness_max_age),
        )
        beating = asyncio.create_task(beat_forever(beats, API))
        try:
            await serve(app, host, port, stop, handoff=socket.socket(fileno=child.handoff_fd))
        finally:
            beating.cancel()


@click.command("serve")
@click.option("--host", help="address to listen on [env: NEWSWATCH_HTTP_HOST, default 0.0.0.0]")
@click.option("--port", type=click.IntRange(0, 65535), help="[env: NEWSWATCH_HTTP_PORT, 8080]")
@pass_app
def serve_command(app: AppContext, host: str | None, port: int | None) -> None:
    """Serve health, metrics, the read API and the live pages over an existing store."""
    settings = app.settings
    serve_api(app, host or settings.http_host, settings.http_port if port is None else port)


def register(main: click.Group) -> None:
    main.add_command(serve_command)
