"""The HTTP API in a process of its own under `newswatch run`.

The service (the parent) binds the HTTP port, then starts `newswatch run --role api` with
three descriptors: the listening socket, the scheduler's status board (status_board.py) and
one end of a socket pair over which the API asks for the service's own metrics at each
scrape. The API's work — parsing requests, reading the store, rendering JSON and pages —
then runs on a GIL and an event loop of its own, so neither its load slows ingestion nor
ingestion its health checks (docs/decisions/0083-api-process.md).

The child dies with the parent (a parent-death signal, lifecycle.bind_to_parent); the parent
stops the child with SIGTERM when it stops itself, and stops itself when the child dies
(a service without its API would fail silently).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import sys
import threading
from dataclasses import dataclass

from prometheus_client import generate_latest

from newswatch.config import Settings
from newswatch.log import get_logger
from newswatch.prometheus_registry import REGISTRY
from newswatch.status_board import StatusBoard

log = get_logger(__name__)

CHILD_STOP_SECONDS = 8.0  # SIGTERM, then SIGKILL: the child's own grace is 3 s
METRICS_WAIT_SECONDS = 2.0  # the child's wait for the parent's metrics at a scrape
BACKLOG = 2048  # connections the kernel queues while the API process starts or is busy
_HEADER = struct.Struct(">II")  # an answer's request number and length


def listen(host: str, port: int) -> socket.socket:
    """The listening socket the API process will serve; RuntimeError when it cannot bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        raise RuntimeError(f"HTTP server could not start on {host}:{port}: {exc}") from exc
    sock.set_inheritable(True)
    return sock


@dataclass(frozen=True)
class ChildLink:
    """What the API process inherits from the service: `--api-child` on its command line."""

    parent_pid: int
    listen_fd: int
    status_fd: int
    metrics_fd: int

    def encode(self) -> str:
        return f"{self.parent_pid},{self.listen_fd},{self.status_fd},{self.metrics_fd}"

    @classmethod
    def decode(cls, value: str) -> ChildLink:
        try:
            parent_pid, listen_fd, status_fd, metrics_fd = (int(v) for v in value.split(","))
        except ValueError:
            raise ValueError(f"--api-child {value!r}: expected PID,FD,FD,FD") from None
        return cls(parent_pid, listen_fd, status_fd, metrics_fd)


class ApiProcess:
    """The service's companion that runs the API process (service.build_service)."""

    def __init__(self, settings: Settings, board: StatusBoard):
        self.settings = settings
        self.board = board

    async def run(self, stop: asyncio.Event) -> None:
        sock = listen(self.settings.http_host, self.settings.http_port)
        ours, theirs = socket.socketpair()
        try:
            link = ChildLink(os.getpid(), sock.fileno(), self.board.fd, theirs.fileno())
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "newswatch",
                "run",
                "--role",
                "api",
                "--api-child",
                link.encode(),
                pass_fds=(sock.fileno(), self.board.fd, theirs.fileno()),
                env=self._child_env(),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            sock.close()  # the child has its own copies now
            theirs.close()
        metrics = asyncio.create_task(serve_metrics(ours))
        try:
            await self._watch(child, stop)
        finally:
            metrics.cancel()
            ours.close()

    async def _watch(self, child: asyncio.subprocess.Process, stop: asyncio.Event) -> None:
        exited = asyncio.create_task(child.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if exited.done():
            raise RuntimeError(f"the API process exited with status {exited.result()}")
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(exited, CHILD_STOP_SECONDS)
        except TimeoutError:
            log.warning("the API process did not stop in time; killing it", pid=child.pid)
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
        log.info("api process stopped", exit_code=child.returncode)

    def _child_env(self) -> dict[str, str]:
        """The parent's environment with the store and config it resolved (they may have
        come from command-line options)."""
        env = dict(os.environ) | {"DATABASE_URL": self.settings.database_url}
        if self.settings.config_path:
            env["NEWSWATCH_CONFIG"] = str(self.settings.config_path)
        return env


async def serve_metrics(sock: socket.socket) -> None:
    """Answer the API process's requests with this process's metrics: a request is its
    number (4 bytes), an answer that number, the length of the text and the text."""
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    try:
        while True:
            number = await reader.readexactly(_HEADER.size // 2)
            payload = generate_latest(REGISTRY)
            writer.write(number + len(payload).to_bytes(_HEADER.size // 2, "big") + payload)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass  # the API process went away; its watcher reports it
    finally:
        writer.close()


class ParentMetrics:
    """The API process's side: the service's metrics, asked for at each scrape."""

    def __init__(self, fd: int, timeout: float = METRICS_WAIT_SECONDS):
        self._sock = socket.socket(fileno=fd)
        self._sock.settimeout(timeout)
        self._lock = threading.Lock()  # scrapes run in worker threads; one asks at a time
        self._asked = 0
        self._buffer = bytearray()

    def fetch(self) -> bytes:
        """The exposition text; OSError (a timeout included) when the service does not
        answer in time. An answer that comes too late is skipped by the next scrape."""
        with self._lock:
            self._asked = (self._asked + 1) % (1 << 32)
            self._sock.sendall(self._asked.to_bytes(_HEADER.size // 2, "big"))
            while True:
                number, payload = self._next_answer()
                if number == self._asked:
                    return payload

    def _next_answer(self) -> tuple[int, bytes]:
        """One whole answer; bytes read before a timeout stay buffered for the next call."""
        self._fill(_HEADER.size)
        number, size = _HEADER.unpack_from(self._buffer)
        end = _HEADER.size + size
        self._fill(end)
        payload = bytes(self._buffer[_HEADER.size : end])
        del self._buffer[:end]
        return number, payload

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the service closed the metrics channel")
            self._buffer += chunk
