"""The HTTP API in processes of its own under `newswatch run`.

The service (the parent, ingestion's process) binds the HTTP port, then starts two
children:

- the **probe front** (api/front.py, `python -m newswatch.api.front`): it accepts every
  connection on the port, answers liveness probes from the heartbeats (api/liveness.py), and
  hands every other connection to the API process;
- the **API process** (`newswatch run --role api --api-child ...`, the same code as
  `newswatch serve`): parsing requests, reading the store, rendering JSON and pages, on an
  interpreter lock and an event loop of its own. It gets the scheduler's status board
  (status_board.py, for /readyz), one end of a socket pair over which it asks for the
  service's own metrics at each scrape, its end of the front's hand-over socket, and the
  heartbeats.

So neither ingestion's work nor the API's load delays a liveness probe, and neither slows
the other through one interpreter lock (docs/decisions/0083-api-process.md,
0089-probe-front.md). Ingestion's event loop beats in its slot of the heartbeats, the API's
in its own; /healthz fails when either stops.

Both children die with the parent (a parent-death signal, lifecycle.bind_to_parent); the
parent stops them with SIGTERM when it stops itself, and stops itself when one of them dies
(a service without its API or its front would fail silently).
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

from newswatch.api.listening import listen, log_listening
from newswatch.api.liveness import INGESTION, Heartbeats, beat_forever
from newswatch.config import Settings
from newswatch.log import get_logger
from newswatch.prometheus_registry import REGISTRY
from newswatch.status_board import StatusBoard

log = get_logger(__name__)

CHILD_STOP_SECONDS = 8.0  # SIGTERM, then SIGKILL: the API process's own grace is 3 s
METRICS_WAIT_SECONDS = 2.0  # the child's wait for the parent's metrics at a scrape
_HEADER = struct.Struct(">II")  # an answer's request number and length


@dataclass(frozen=True)
class ChildLink:
    """What the API process inherits from the service: `--api-child` on its command line."""

    parent_pid: int
    status_fd: int
    metrics_fd: int
    handoff_fd: int
    heartbeats_fd: int

    def encode(self) -> str:
        return ",".join(
            str(n)
            for n in (
                self.parent_pid,
                self.status_fd,
                self.metrics_fd,
                self.handoff_fd,
                self.heartbeats_fd,
            )
        )

    @classmethod
    def decode(cls, value: str) -> ChildLink:
        try:
            parent_pid, status_fd, metrics_fd, handoff_fd, heartbeats_fd = (
                int(v) for v in value.split(",")
            )
        except ValueError:
            raise ValueError(f"--api-child {value!r}: expected PID,FD,FD,FD,FD") from None
        return cls(parent_pid, status_fd, metrics_fd, handoff_fd, heartbeats_fd)


class ApiProcess:
    """The service's companion that runs the probe front and the API process
    (service.build_service)."""

    def __init__(self, settings: Settings, board: StatusBoard):
        self.settings = settings
        self.board = board

    async def run(self, stop: asyncio.Event) -> None:
        beats = Heartbeats.create()
        metrics_ours, metrics_theirs = socket.socketpair()
        children: dict[str, asyncio.subprocess.Process] = {}
        beating = metrics = None
        try:
            await self._start(children, beats, metrics_theirs)
            # On this loop: when ingestion's loop is stuck, the beats stop and /healthz fails.
            beating = asyncio.create_task(beat_forever(beats, INGESTION))
            metrics = asyncio.create_task(serve_metrics(metrics_ours))
            await self._watch(children, stop)
        finally:
            await _stop_all(children)
            for task in (beating, metrics):
                if task is not None:
                    task.cancel()
            metrics_ours.close()
            metrics_theirs.close()
            beats.close()

    async def _start(
        self,
        children: dict[str, asyncio.subprocess.Process],
        beats: Heartbeats,
        metrics: socket.socket,
    ) -> None:
        settings = self.settings
        sock = listen(settings.http_host, settings.http_port)
        api_end, front_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # None of these is inheritable here: pass_fds makes each child's copies inheritable
        # in that child only, so no other process the service starts holds them.
        try:
            link = ChildLink(
                os.getpid(), self.board.fd, metrics.fileno(), api_end.fileno(), beats.fd
            )
            children["API process"] = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "newswatch", "run", "--role", "api"),
                *("--api-child", link.encode()),
                pass_fds=(self.board.fd, metrics.fileno(), api_end.fileno(), beats.fd),
                env=self._child_env(),
            )
            children["probe front"] = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "newswatch.api.front", "--parent", str(os.getpid())),
                *("--listen-fd", str(sock.fileno()), "--handoff-fd", str(front_end.fileno())),
                *("--heartbeats-fd", str(beats.fd)),
                *("--max-age", str(settings.liveness_max_age)),
                pass_fds=(sock.fileno(), front_end.fileno(), beats.fd),
            )
            # Connections queue in the kernel until the front accepts them.
            port = int(sock.getsockname()[1])
            log_listening(settings.http_host, port, bool(settings.token_holders))
        finally:
            # The children have their own copies now. The metrics end too: while the service
            # held it, the API process's death never closed the channel (decision 0093).
            for end in (sock, api_end, front_end, metrics):
                end.close()

    async def _watch(
        self, children: dict[str, asyncio.subprocess.Process], stop: asyncio.Event
    ) -> None:
        exits = {asyncio.create_task(child.wait()): name for name, child in children.items()}
        stopping = asyncio.create_task(stop.wait())
        done, _pending = await asyncio.wait({*exits, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        for task in exits:
            if task in done:
                raise RuntimeError(f"the {exits[task]} exited with status {task.result()}")

    def _child_env(self) -> dict[str, str]:
        """The parent's environment with the store and config it resolved (they may have
        come from command-line options)."""
        env = dict(os.environ) | {"DATABASE_URL": self.settings.database_url}
        if self.settings.config_path:
            env["NEWSWATCH_CONFIG"] = str(self.settings.config_path)
        return env


async def _stop_all(children: dict[str, asyncio.subprocess.Process]) -> None:
    """SIGTERM to every child still running, at once; SIGKILL to those still there after
    CHILD_STOP_SECONDS."""
    running = {name: c for name, c in children.items() if c.returncode is None}
    for child in running.values():
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
    await asyncio.gather(*(_reap(name, child) for name, child in running.items()))


async def _reap(name: str, child: asyncio.subprocess.Process) -> None:
    try:
        await asyncio.wait_for(child.wait(), CHILD_STOP_SECONDS)
    except TimeoutError:
        log.warning(f"the {name} did not stop in time; killing it", pid=child.pid)
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
    log.info(f"{name} stopped", exit_code=child.returncode)


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
