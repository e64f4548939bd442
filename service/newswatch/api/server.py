"""Running the app on uvicorn inside the caller's event loop (the service or `serve`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from newswatch.log import get_logger

log = get_logger(__name__)

# On stop, requests still running after this many seconds are cancelled: a stop (SIGTERM)
# must not wait for every client of a loaded API.
GRACEFUL_SHUTDOWN_SECONDS = 3


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the service owns SIGTERM/SIGINT and tells us
    to stop through an event."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app  # config.app is typed as any ASGI app; this one has our settings

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:  # the bound port matters when port 0 was asked for
            port = bound_port(self)
            url = page_url(self.config.host, port)
            log.info(
                "http server listening",
                host=self.config.host,
                port=port,
                web_page=url,
                token=token_hint(url, bool(self.app.state.settings.token_holders)),
            )


def page_url(host: str, port: int | None) -> str:
    """The address to open in a browser: a wildcard host means this machine."""
    if host in ("", "0.0.0.0", "::"):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def token_hint(url: str, required: bool) -> str:
    if required:
        return f"open {url}?token=<NEWSWATCH_API_TOKEN> once; the browser keeps it"
    return "none: NEWSWATCH_API_TOKEN is not set, anyone who reaches the port can read"


def make_server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep the process's structlog set-up
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return _Server(config, app)


async def serve(
    app: FastAPI,
    host: str,
    port: int,
    stop: asyncio.Event,
    *,
    server: uvicorn.Server | None = None,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Serve `app` on host:port (or on `sockets`, bound already) until `stop` is set;
    in-flight requests finish first."""
    server = server or make_server(app, host, port)

    async def watch() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(watch())
    try:
        await server.serve(sockets)
    except SystemExit as exc:  # uvicorn exits when it cannot bind the port
        raise RuntimeError(f"HTTP server could not start on {host}:{port}") from exc
    finally:
        watcher.cancel()
    if not server.started and not stop.is_set():
        raise RuntimeError(f"HTTP server could not start on {host}:{port}")
    log.info("http server stopped")


def bound_port(server: uvicorn.Server) -> int | None:
    """The port actually bound (useful with port 0)."""
    for s in getattr(server, "servers", []):
        for sock in s.sockets:
            return int(sock.getsockname()[1])
    return None
