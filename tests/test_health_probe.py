"""/healthz answered by the HTTP protocol itself on a probe's connection (decision 0086): a
real uvicorn on 127.0.0.1, raw sockets to control what a connection carries. Then the
heartbeats behind /healthz under `run` and the probe front that answers it there, on real
sockets (decision 0089)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine

from newswatch.api import front as front_module
from newswatch.api.app import create_app
from newswatch.api.front import Front
from newswatch.api.liveness import ALIVE, API, INGESTION, Heartbeats, Verdict, verdict
from newswatch.api.server import make_server, probe_answer, serve
from newswatch.config import Settings
from tests.api_support import Running, running

PROBE = b"GET /healthz HTTP/1.1\r\nHost: probe\r\nUser-Agent: kube-probe/1.30\r\n\r\n"


@pytest.fixture
def api(sqlite_engine: Engine) -> Iterator[Running]:
    settings = Settings(_env_file=None, NEWSWATCH_API_TOKEN="secret")  # type: ignore[call-arg]
    with running(create_app(sqlite_engine, settings)) as served:
        yield served


def _connect(api: Running) -> socket.socket:
    host, port = api.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _response(conn: socket.socket) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """One response: status line, headers, body (by its content-length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines)}
    length = int(headers.get(b"content-length", b"0"))
    while len(rest) < length:
        rest += conn.recv(65536)
    return status, headers, rest[:length]


def test_probe_requests_on_one_connection_are_answered_then_the_api_takes_over(
    api: Running,
) -> None:
    with _connect(api) as conn:
        for _ in range(3):  # keep-alive: a probe's connection answers again and again
            conn.sendall(PROBE)
            status, headers, body = _response(conn)
            assert status == b"HTTP/1.1 200 OK" and body == b'{"status":"ok"}'
            assert headers[b"content-type"] == b"application/json" and b"date" in headers
        # Another request on the same connection: uvicorn and the app answer it (the token).
        conn.sendall(b"GET /api/sources HTTP/1.1\r\nHost: probe\r\n\r\n")
        status, _headers, body = _response(conn)
        assert status.startswith(b"HTTP/1.1 401") and b"bearer token" in body
        conn.sendall(PROBE)  # from now on the app's own /healthz route answers
        status, _headers, body = _response(conn)
        assert status == b"HTTP/1.1 200 OK" and b'"status":"ok"' in body


def test_head_has_no_body_and_connection_close_closes(api: Running) -> None:
    with _connect(api) as conn:
        conn.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in head.lower()
        assert body == b""  # and the server closed the connection (recv returned b"")


def test_a_probe_split_over_two_packets_is_answered_by_the_server_proper(api: Running) -> None:
    with _connect(api) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n")
        conn.sendall(b"\r\n")
        status, _headers, body = _response(conn)
        assert status == b"HTTP/1.1 200 OK" and b'"status":"ok"' in body


def test_an_ordinary_client_gets_the_same_answer(api: Running) -> None:
    response = api.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthzz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /api/events HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
    ],
)
def test_anything_but_one_complete_plain_probe_is_left_to_the_server(request_bytes: bytes) -> None:
    assert probe_answer(request_bytes, []) is None


# --- Liveness from heartbeats (api/liveness.py) and the probe front (api/front.py) ---------


def test_liveness_fails_naming_the_loop_that_stopped_beating() -> None:
    beats = Heartbeats.create()
    try:
        beats.beat(INGESTION, now=1000.0)
        beats.beat(API, now=1000.0)
        assert verdict(beats.last_beats(), now=1010.0, max_age=20.0) == ALIVE
        beats.beat(API, now=1025.0)  # ingestion's loop stopped at 1000
        stuck = verdict(beats.last_beats(), now=1030.0, max_age=20.0)
        assert stuck.status == 503
        assert json.loads(stuck.body) == {
            "status": "stuck",
            "stuck": ["ingestion"],
            "seconds_since_beat": {"ingestion": 30.0},
        }
        beats.beat(INGESTION, now=1031.0)  # it turns again
        assert verdict(beats.last_beats(), now=1032.0, max_age=20.0) == ALIVE
    finally:
        beats.close()


def test_another_mapping_of_the_descriptor_sees_the_beats() -> None:
    """What the front and the API process see: the beats through their inherited copy."""
    beats = Heartbeats.create()
    seen = Heartbeats(os.dup(beats.fd))
    try:
        beats.beat(INGESTION, now=5.0)
        seen.beat(API, now=7.5)
        assert seen.last_beats() == {INGESTION: 5.0, API: 7.5}
        assert beats.last_beats() == {INGESTION: 5.0, API: 7.5}
    finally:
        seen.close()
        beats.close()


def test_a_stuck_verdict_is_the_probe_answer() -> None:
    stuck = verdict({INGESTION: 0.0, API: 50.0}, now=60.0, max_age=20.0)
    answer = probe_answer(PROBE, [(b"date", b"today")], stuck)
    assert answer is not None
    response, close = answer
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") and not close
    assert json.loads(body)["stuck"] == ["ingestion"]
    assert f"content-length: {len(body)}".encode() in head


@dataclass
class FrontUnderTest:
    address: tuple[str, int]
    api_end: socket.socket  # what the API process would read handed-over connections from
    verdicts: list[Verdict]  # what the front's liveness check answers next (last one repeats)

    def connect(self) -> socket.socket:
        return socket.create_connection(self.address, timeout=30)

    def handed_over(self) -> socket.socket:
        self.api_end.settimeout(30)
        message, fds, _flags, _address = socket.recv_fds(self.api_end, 16, 4)
        assert message == b"c" and len(fds) == 1
        conn = socket.socket(fileno=fds[0])
        conn.settimeout(30)
        return conn


@pytest.fixture
def front() -> Iterator[FrontUnderTest]:
    """A real front in a thread: a real listening socket and a real hand-over socket pair."""
    listener = socket.create_server(("127.0.0.1", 0))
    api_end, front_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    verdicts = [ALIVE]
    the_front = Front(listener, front_end, lambda: verdicts[0])
    threading.Thread(target=the_front.run_forever, daemon=True).start()
    try:
        yield FrontUnderTest(listener.getsockname(), api_end, verdicts)
    finally:
        api_end.close()  # the thread stays blocked in select until the test process exits


def test_the_front_answers_probes_from_the_heartbeats(front: FrontUnderTest) -> None:
    with front.connect() as conn:
        conn.sendall(PROBE)
        status, headers, body = _response(conn)
        assert status == b"HTTP/1.1 200 OK" and body == b'{"status":"ok"}'
        assert b"GMT" in headers[b"date"]
        front.verdicts[0] = verdict({INGESTION: 0.0, API: 100.0}, now=100.0, max_age=20.0)
        conn.sendall(PROBE)  # keep-alive: the same connection, the new verdict
        status, _headers, body = _response(conn)
        assert status == b"HTTP/1.1 503 Service Unavailable"
        assert json.loads(body)["stuck"] == ["ingestion"]


def test_the_front_hands_other_connections_over_with_the_request_unread(
    front: FrontUnderTest,
) -> None:
    request = b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n"
    with front.connect() as conn:
        conn.sendall(request)
        with front.handed_over() as adopted:
            assert adopted.recv(65536) == request
            adopted.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")  # the API process answers
        assert conn.recv(65536) == b"HTTP/1.1 204 No Content\r\n\r\n"


def test_a_probe_connection_is_handed_over_at_its_first_other_request(
    front: FrontUnderTest,
) -> None:
    with front.connect() as conn:
        conn.sendall(PROBE)
        assert _response(conn)[0] == b"HTTP/1.1 200 OK"
        split = b"GET /healthz HTTP/1.1\r\nHost: probe\r\n"  # not one complete probe
        conn.sendall(split)
        with front.handed_over() as adopted:
            assert adopted.recv(65536) == split  # the answered probe is not in it


def test_the_front_closes_a_connection_that_asks_to_be_closed(front: FrontUnderTest) -> None:
    with front.connect() as conn:
        conn.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and body == b""


_OUT_OF_DESCRIPTORS = """
import os, resource, socket
from newswatch.api.front import Front
listener = socket.create_server(("127.0.0.1", 0))
api_end, front_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
front = Front(listener, front_end, lambda: None)
client = socket.create_connection(listener.getsockname())
# No descriptor left: the limit just above the highest open one, every hole filled.
highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
fillers = []
while True:
    try:
        fillers.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        break
front._accept()
watched = listener in {key.fileobj for key in front.selector.get_map().values()}
print("watched after a failed accept:", watched)
os.close(fillers.pop())
front._resume_accepting(front.accept_paused_until + 1)
watched = listener in {key.fileobj for key in front.selector.get_map().values()}
print("watched once resumed:", watched)
front._accept()
print("accepted:", len(front.idle_until))
"""


def test_an_accept_out_of_descriptors_stops_watching_the_listener_for_a_while() -> None:
    """Out of descriptors, accept fails while the listener stays readable (the connection
    waits in the kernel's queue): still watching it would spin the front's loop at full CPU
    and answer no probe. A real EMFILE, in a process of its own (review of 0089)."""
    done = subprocess.run(
        [sys.executable, "-c", _OUT_OF_DESCRIPTORS], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "accept failed" in done.stderr and "Too many open files" in done.stderr
    assert done.stdout.splitlines() == [
        "watched after a failed accept: False",
        "watched once resumed: True",
        "accepted: 1",
    ]


def test_a_connection_that_sends_nothing_goes_to_the_api_process_as_it_is(
    front: FrontUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn waits for a new connection's first request without a limit: the front does
    not close a silent one (it did after 5 s), it hands it over when it stops watching, and
    the request that comes later reaches the API process (decision 0093)."""
    monkeypatch.setattr(front_module, "FIRST_REQUEST_SECONDS", 0.0)
    with front.connect() as conn, front.handed_over() as adopted:
        request = b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n"
        conn.sendall(request)
        assert adopted.recv(65536) == request


_TOO_MANY_IN_FLIGHT = """
import os, resource, socket
from newswatch.api.front import Front
listener = socket.create_server(("127.0.0.1", 0))
api_end, front_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
held, holder = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
client = socket.create_connection(listener.getsockname())
if os.geteuid() == 0:  # root may pass any number (CAP_SYS_RESOURCE): be nobody
    os.setgid(65534)
    os.setuid(65534)
# Linux refuses to send a descriptor while the user's descriptors in flight (sent, not yet
# received) outnumber the sender's RLIMIT_NOFILE: put 40 in flight, allow 30.
spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(40)]
socket.send_fds(held, [b"x"], spare)
for fd in spare:
    os.close(fd)
resource.setrlimit(resource.RLIMIT_NOFILE, (30, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
front = Front(listener, front_end, lambda: None)
client.sendall(b"GET /api/events HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
for _ in range(20):
    front.step()
    if front.handoff_paused_until is not None:
        break
print("waiting:", len(front.waiting))
client.setblocking(False)
try:
    print("client closed:", client.recv(1) == b"")
except BlockingIOError:
    print("client closed:", False)
held.close()  # its queue goes, and the 40 descriptors in flight with it
holder.close()
for _ in range(50):
    front.step()
    if not front.waiting:
        break
api_end.settimeout(30)
_message, fds, _flags, _address = socket.recv_fds(api_end, 16, 4)
print("handed over:", socket.socket(fileno=fds[0]).recv(100).split(b"\\r\\n")[0].decode())
"""


def test_too_many_descriptors_in_flight_delay_the_hand_over_without_losing_the_client() -> None:
    """ETOOMANYREFS means the API process has not taken the descriptors sent before, not
    that it is gone: the connection waits and is handed over once they are taken (it was
    closed). A real ETOOMANYREFS, in a process of its own."""
    done = subprocess.run(
        [sys.executable, "-c", _TOO_MANY_IN_FLIGHT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "hand-over waits" in done.stderr and "Too many references" in done.stderr
    assert done.stdout.splitlines() == [
        "waiting: 1",
        "client closed: False",
        "handed over: GET /api/events HTTP/1.1",
    ]


def test_the_api_process_stops_when_its_hand_over_socket_fails(sqlite_engine: Engine) -> None:
    """A hand-over socket that fails (here a real ECONNRESET: the front's end closed with a
    message unread) can bring no connection any more: the API process stops with an error,
    so the service sees its child die and stops (it dropped the socket and served nothing,
    silently). EAGAIN/EINTR only mean "nothing yet" (decision 0093)."""
    app = create_app(sqlite_engine, Settings(_env_file=None))  # type: ignore[call-arg]
    api_end, front_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    api_end.send(b"x")  # into the front's queue, never read
    front_end.close()

    async def main() -> None:
        stop = asyncio.Event()
        server = make_server(app, "127.0.0.1", 0, api_end)
        serving = serve(app, "127.0.0.1", 0, stop, server=server, handoff=api_end)
        # The bound is a guard against a hang (what happened before), not a latency claim.
        with pytest.raises(RuntimeError, match=r"hand-over socket failed: .*reset"):
            await asyncio.wait_for(serving, 60)

    asyncio.run(main())
