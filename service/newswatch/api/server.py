"""Running the app on uvicorn inside the caller's event loop (the service or `serve`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.auto import AutoHTTPProtocol

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


# What a liveness probe sends first on a connection of its own (kubelet, Docker's
# HEALTHCHECK, a load balancer): answered by the protocol itself (HealthProbeProtocol).
_PROBE_REQUEST_LINES = {b"GET /healthz HTTP/1.1\r\n": False, b"HEAD /healthz HTTP/1.1\r\n": True}
_HEALTH_BODY = b'{"status":"ok"}'
_END_OF_HEAD = b"\r\n\r\n"


def probe_answer(
    data: bytes, default_headers: list[tuple[bytes, bytes]]
) -> tuple[bytes, bool] | None:
    """The response to `data` when it is exactly one complete `GET`/`HEAD /healthz` request
    without a body, and whether to close the connection after it; None for anything else
    (the HTTP server proper answers it)."""
    head_only = next((h for line, h in _PROBE_REQUEST_LINES.items() if data.startswith(line)), None)
    if head_only is None or not data.endswith(_END_OF_HEAD) or data.count(_END_OF_HEAD) != 1:
        return None
    lowered = data.lower()
    if b"\r\ncontent-length:" in lowered or b"\r\ntransfer-encoding:" in lowered:
        return None
    headers = [
        *default_headers,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_HEALTH_BODY)).encode()),
    ]
    close = b"\r\nconnection: close\r\n" in lowered
    if close:
        headers.append((b"connection", b"close"))
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    return head + b"\r\n" + (b"" if head_only else _HEALTH_BODY), close


class HealthProbeProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's HTTP protocol, but a connection that has carried nothing but `/healthz`
    requests is answered here, in the event loop callback that received the bytes: no
    request task (one more turn of the loop, behind every other ready callback), no
    middleware, no routing. Under API load the loop is busy with the other clients'
    requests; a liveness probe then waits for one turn instead of two
    (docs/decisions/0086-healthz-in-the-protocol.md). The first other request hands the
    connection to uvicorn for good (its parser has seen nothing before, so it starts at a
    request boundary). The app's own /healthz route answers probes on shared connections."""

    _handed_over = False

    def data_received(self, data: bytes) -> None:
        if not self._handed_over:
            answer = probe_answer(data, self.server_state.default_headers)
            if answer is not None:
                response, close = answer
                self._unset_keepalive_if_required()
                self.transport.write(response)
                if close:
                    self.transport.close()
                else:
                    self.timeout_keep_alive_task = self.loop.call_later(
                        self.timeout_keep_alive, self._close_idle_probe
                    )
                return
            self._handed_over = True
        super().data_received(data)

    def _close_idle_probe(self) -> None:
        self.timeout_keep_alive_task = None
        if not self.transport.is_closing():
            self.transport.close()


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
        http=HealthProbeProtocol,
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
