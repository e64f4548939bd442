"""Running the app on uvicorn inside the caller's event loop (the service or `serve`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from newswatch.api.listening import log_listening
from newswatch.api.liveness import ALIVE, Verdict
from newswatch.api.probe import probe_answer
from newswatch.log import get_logger

log = get_logger(__name__)

# On stop, requests still running after this many seconds are cancelled: a stop (SIGTERM)
# must not wait for every client of a loaded API.
GRACEFUL_SHUTDOWN_SECONDS = 3


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the service owns SIGTERM/SIGINT and tells us
    to stop through an event. Under `newswatch run` it accepts nothing itself: the probe
    front hands it connections over `handoff` (api/front.py)."""

    def __init__(
        self, config: uvicorn.Config, app: FastAPI, handoff: socket.socket | None = None
    ) -> None:
        super().__init__(config)
        self.app = app  # config.app is typed as any ASGI app; this one has our settings
        self.handoff = handoff
        # Why the hand-over socket failed, if it did: the process then stops with an error
        # (serve raises), so the service's watcher sees its API process die (decision 0093).
        self.handoff_error: OSError | None = None
        self._adopting: set[asyncio.Task[Any]] = set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        if self.handoff is not None:
            self._adopt_handed_over()
            log.info("api process serving the connections the front hands over")
        else:  # the bound port matters when port 0 was asked for
            token_required = bool(self.app.state.settings.token_holders)
            log_listening(self.config.host, bound_port(self), token_required)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.handoff is not None:
            asyncio.get_running_loop().remove_reader(self.handoff.fileno())
        await super().shutdown(sockets)

    def _adopt_handed_over(self) -> None:
        """Serve each connection the front sends (one descriptor a message) with the same
        protocol as an accepted one: the request is still unread in its socket."""
        assert self.handoff is not None
        handoff, config, loop = self.handoff, self.config, asyncio.get_running_loop()
        handoff.setblocking(False)

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=loop,
            )

        def receive() -> None:
            while True:
                try:
                    message, fds, flags, _address = socket.recv_fds(handoff, 16, 4)
                except (BlockingIOError, InterruptedError):  # nothing yet: called again
                    return
                except OSError as exc:  # no connection can reach this process any more
                    log.error("the probe front's hand-over socket failed", error=repr(exc))
                    loop.remove_reader(handoff.fileno())
                    self.handoff_error = exc
                    self.should_exit = True
                    return
                if not message and not fds:  # the front is gone; the service stops on that
                    loop.remove_reader(handoff.fileno())
                    return
                if flags & socket.MSG_CTRUNC:  # the kernel closed what found no descriptor
                    log.warning("a handed-over connection was lost: out of descriptors")
                for fd in fds:
                    task = loop.create_task(
                        loop.connect_accepted_socket(protocol, socket.socket(fileno=fd))
                    )
                    self._adopting.add(task)
                    task.add_done_callback(self._adopted)

        loop.add_reader(handoff.fileno(), receive)

    def _adopted(self, task: asyncio.Task[Any]) -> None:
        self._adopting.discard(task)
        if not task.cancelled() and task.exception() is not None:  # the client left already
            log.debug("a handed-over connection closed early", error=repr(task.exception()))


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

    @staticmethod
    def liveness() -> Verdict:
        """Replaced by make_server with the app's check (api/liveness.py) when it has one."""
        return ALIVE

    def data_received(self, data: bytes) -> None:
        if not self._handed_over:
            answer = probe_answer(data, self.server_state.default_headers, self.liveness())
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


def make_server(
    app: FastAPI, host: str, port: int, handoff: socket.socket | None = None
) -> uvicorn.Server:
    protocol = HealthProbeProtocol
    check = app.state.liveness
    if check is not None:

        class LivenessProbeProtocol(HealthProbeProtocol):
            liveness = staticmethod(check)

        protocol = LivenessProbeProtocol
    config = uvicorn.Config(
        app,
        http=protocol,
        host=host,
        port=port,
        log_config=None,  # keep the process's structlog set-up
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return _Server(config, app, handoff)


async def serve(
    app: FastAPI,
    host: str,
    port: int,
    stop: asyncio.Event,
    *,
    server: uvicorn.Server | None = None,
    handoff: socket.socket | None = None,
) -> None:
    """Serve `app` on host:port (or, given `handoff`, the connections the probe front sends
    over it) until `stop` is set; in-flight requests finish first."""
    server = server or make_server(app, host, port, handoff)

    async def watch() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(watch())
    try:
        await server.serve([] if handoff is not None else None)
    except SystemExit as exc:  # uvicorn exits when it cannot bind the port
        raise RuntimeError(f"HTTP server could not start on {host}:{port}") from exc
    finally:
        watcher.cancel()
    failed = getattr(server, "handoff_error", None)
    if failed is not None:
        raise RuntimeError(f"the probe front's hand-over socket failed: {failed}")
    if not server.started and not stop.is_set():
        raise RuntimeError(f"HTTP server could not start on {host}:{port}")
    log.info("http server stopped")


def bound_port(server: uvicorn.Server) -> int | None:
    """The port actually bound (useful with port 0)."""
    for s in getattr(server, "servers", []):
        for sock in s.sockets:
            return int(sock.getsockname()[1])
    return None
