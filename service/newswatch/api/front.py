"""The probe front of `newswatch run`: the process that accepts the HTTP port's connections.

A connection whose first request is a liveness probe (`GET`/`HEAD /healthz`, one complete
request) is answered here, from the service's heartbeats (api/liveness.py): 200 while
ingestion's and the API's event loops both beat, 503 naming the one that stopped. Any
other connection is handed to the API process whole — its descriptor over a Unix socket
(SCM_RIGHTS), the request still unread in the kernel (it was only peeked at) — and served
there by uvicorn as if that process had accepted it. Nothing is copied or proxied: after the
hand-over the front never sees the connection again. A probe connection that later carries
another request is handed over at that request's boundary; one that has sent nothing for
FIRST_REQUEST_SECONDS is handed over as it is, so the API process treats it as uvicorn
treats any new connection (it waits for the first request: `newswatch serve` behaves the
same).

Why a process of its own: an answer is only as quick as the loop that gives it, and both
of the service's loops are busy under load (the API's with fifty clients, ingestion's with
polls, both sharing their interpreter's lock with worker threads). The front does nothing
else, so a probe waits only for the operating system, as a bare server would
(docs/decisions/0089-probe-front.md). One thread, no event loop library, and of
newswatch only the liveness reader and lifecycle's parent-death link (which brings
structlog with it): it starts in a fraction of the API's time and memory.

    python -m newswatch.api.front --parent PID --listen-fd FD --handoff-fd FD --heartbeats-fd FD
"""

from __future__ import annotations

import argparse
import collections
import errno
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from email.utils import formatdate

from newswatch.api.liveness import DEFAULT_MAX_AGE_SECONDS, Heartbeats, Verdict, checker
from newswatch.api.probe import is_probe, probe_answer

PEEK_BYTES = 8192  # a probe's request is a few hundred bytes; anything longer is not one
KEEP_ALIVE_SECONDS = 5.0  # an idle probe connection is closed after this (uvicorn's default)
# A new connection that has sent nothing after this goes to the API process unread: uvicorn
# sets no limit on the wait for a first request, and the front's clients get what a client
# of `newswatch serve` gets (decision 0093). The front only stops watching it.
FIRST_REQUEST_SECONDS = KEEP_ALIVE_SECONDS
# After a failed accept (out of descriptors) the listener is left alone this long: it stays
# readable while the kernel queues connections, so watching it would spin the loop.
ACCEPT_PAUSE_SECONDS = 0.1
# After ETOOMANYREFS (too many descriptors in flight, not yet taken by the API process:
# Linux counts them against the sender's RLIMIT_NOFILE) hand-overs wait this long; the
# socket stays writable meanwhile, so watching it would spin the loop (decision 0093).
HANDOFF_PAUSE_SECONDS = 0.1
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


class Front:
    def __init__(
        self, listener: socket.socket, handoff: socket.socket, liveness: Callable[[], Verdict]
    ):
        self.listener = listener
        self.handoff = handoff  # SOCK_SEQPACKET to the API process: one connection a message
        self.liveness = liveness
        self.selector = selectors.DefaultSelector()
        self.idle_until: dict[socket.socket, float] = {}  # connections watched, until when
        self.fresh: set[socket.socket] = set()  # watched, nothing received yet
        self.waiting: collections.deque[socket.socket] = collections.deque()  # to hand over
        self._date = (0, [(b"date", b"")])
        self._handoff_watched = False
        self.accept_paused_until: float | None = None
        self.handoff_paused_until: float | None = None
        self._refs_reported = False
        listener.setblocking(False)
        handoff.setblocking(False)
        self.selector.register(listener, _READ)

    def run_forever(self) -> None:
        while True:
            self.step()

    def step(self) -> None:
        """One turn of the loop: wait for the sockets (at most until the next pause ends),
        serve what is ready, then what is due."""
        paused = self.accept_paused_until is not None or self.handoff_paused_until is not None
        pause = min(ACCEPT_PAUSE_SECONDS, HANDOFF_PAUSE_SECONDS)
        for key, events in self.selector.select(timeout=pause if paused else 1.0):
            if key.fileobj is self.listener:
                self._accept()
            elif key.fileobj is self.handoff:
                self._hand_over_waiting()
            elif events & _READ:
                self._serve(key.fileobj)  # type: ignore[arg-type]
        now = time.monotonic()
        self._close_idle(now)
        self._resume_accepting(now)
        self._resume_handing_over(now)

    def _accept(self) -> None:
        while True:
            try:
                conn, _address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: the kernel keeps the rest queued
                print(f"newswatch probe front: accept failed: {exc}", file=sys.stderr)
                self._pause_accepting(time.monotonic() + ACCEPT_PAUSE_SECONDS)
                return
            conn.setblocking(False)
            self.selector.register(conn, _READ)
            self.idle_until[conn] = time.monotonic() + FIRST_REQUEST_SECONDS
            self.fresh.add(conn)

    def _pause_accepting(self, until: float) -> None:
        if self.accept_paused_until is None:
            self.selector.unregister(self.listener)
        self.accept_paused_until = until

    def _resume_accepting(self, now: float) -> None:
        if self.accept_paused_until is not None and now >= self.accept_paused_until:
            self.selector.register(self.listener, _READ)
            self.accept_paused_until = None

    def _serve(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(PEEK_BYTES, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
        elif is_probe(data):
            self.fresh.discard(conn)
            self._answer(conn, conn.recv(len(data)))
        else:
            self._hand_over(conn)

    def _hand_over(self, conn: socket.socket) -> None:
        self._forget(conn)
        self.waiting.append(conn)
        self._hand_over_waiting()

    def _answer(self, conn: socket.socket, request: bytes) -> None:
        answer = probe_answer(request, self._default_headers(), self.liveness())
        assert answer is not None  # is_probe said so
        response, close = answer
        try:
            sent = conn.send(response)  # a few hundred bytes into an empty socket buffer
        except OSError:
            sent = 0
        if close or sent != len(response):
            self._close(conn)
        else:
            self.idle_until[conn] = time.monotonic() + KEEP_ALIVE_SECONDS

    def _hand_over_waiting(self) -> None:
        """Send the waiting connections to the API process, in order; when its queue is
        full, wait until the socket is writable again (the API process is busy, not gone:
        its heartbeat says which). Too many descriptors in flight: wait a moment."""
        if self.handoff_paused_until is not None:
            return
        while self.waiting:
            conn = self.waiting[0]
            try:
                socket.send_fds(self.handoff, [b"c"], [conn.fileno()])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.ETOOMANYREFS:  # behind, not gone: try again shortly
                    if not self._refs_reported:  # once a spell, not at every retry
                        print(f"newswatch probe front: hand-over waits: {exc}", file=sys.stderr)
                        self._refs_reported = True
                    self._watch_handoff(writable=False)
                    self.handoff_paused_until = time.monotonic() + HANDOFF_PAUSE_SECONDS
                    return
                # The API process is gone; the service stops on that.
                print(f"newswatch probe front: hand-over failed: {exc}", file=sys.stderr)
                conn.close()
            else:
                conn.close()  # the API process has its own descriptor now
                self._refs_reported = False
            self.waiting.popleft()
        self._watch_handoff(writable=bool(self.waiting))

    def _resume_handing_over(self, now: float) -> None:
        if self.handoff_paused_until is not None and now >= self.handoff_paused_until:
            self.handoff_paused_until = None
            self._hand_over_waiting()

    def _watch_handoff(self, *, writable: bool) -> None:
        if writable and not self._handoff_watched:
            self.selector.register(self.handoff, _WRITE)
        elif self._handoff_watched and not writable:
            self.selector.unregister(self.handoff)
        self._handoff_watched = writable

    def _default_headers(self) -> list[tuple[bytes, bytes]]:
        second = int(time.time())
        if self._date[0] != second:
            self._date = (second, [(b"date", formatdate(second, usegmt=True).encode())])
        return self._date[1]

    def _close_idle(self, now: float) -> None:
        """Idle probe connections are closed; new ones still silent go to the API process."""
        for conn in [c for c, until in self.idle_until.items() if until < now]:
            if conn in self.fresh:
                self._hand_over(conn)
            else:
                self._close(conn)

    def _forget(self, conn: socket.socket) -> None:
        self.selector.unregister(conn)
        self.idle_until.pop(conn, None)
        self.fresh.discard(conn)

    def _close(self, conn: socket.socket) -> None:
        self._forget(conn)
        conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m newswatch.api.front")
    parser.add_argument("--parent", type=int, required=True, help="the service's pid")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--handoff-fd", type=int, required=True)
    parser.add_argument("--heartbeats-fd", type=int, required=True)
    parser.add_argument("--max-age", type=float, default=DEFAULT_MAX_AGE_SECONDS)
    args = parser.parse_args(argv)
    from newswatch.lifecycle import bind_to_parent

    bind_to_parent(args.parent)  # dies with the service, even after its SIGKILL
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    front = Front(
        socket.socket(fileno=args.listen_fd),
        socket.socket(fileno=args.handoff_fd),
        checker(Heartbeats(args.heartbeats_fd), args.max_age),
    )
    front.run_forever()


if __name__ == "__main__":
    main()
