"""/healthz answered by the HTTP protocol itself on a probe's connection (decision 0086): a
real uvicorn on 127.0.0.1, raw sockets to control what a connection carries."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from newswatch.api.app import create_app
from newswatch.api.server import probe_answer
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
