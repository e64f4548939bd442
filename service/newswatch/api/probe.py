"""The answer to a liveness probe's request, built without the HTTP server: by uvicorn's
protocol on a probe's own connection (api/server.py HealthProbeProtocol) and by the probe
front of `newswatch run` (api/front.py). Standard library only: the front imports this."""

from __future__ import annotations

from newswatch.api.liveness import ALIVE, Verdict

# What a liveness probe sends first on a connection of its own (kubelet, Docker's
# HEALTHCHECK, a load balancer): the request line, and whether it asks for the head only.
_PROBE_REQUEST_LINES = {b"GET /healthz HTTP/1.1\r\n": False, b"HEAD /healthz HTTP/1.1\r\n": True}
_END_OF_HEAD = b"\r\n\r\n"
_STATUS_LINES = {200: b"HTTP/1.1 200 OK\r\n", 503: b"HTTP/1.1 503 Service Unavailable\r\n"}


def is_probe(data: bytes) -> bool:
    """Whether `data` is exactly one complete `GET`/`HEAD /healthz` request without a body."""
    if not any(data.startswith(line) for line in _PROBE_REQUEST_LINES):
        return False
    if not data.endswith(_END_OF_HEAD) or data.count(_END_OF_HEAD) != 1:
        return False
    lowered = data.lower()
    return b"\r\ncontent-length:" not in lowered and b"\r\ntransfer-encoding:" not in lowered


def probe_answer(
    data: bytes, default_headers: list[tuple[bytes, bytes]], verdict: Verdict = ALIVE
) -> tuple[bytes, bool] | None:
    """The response to `data` when it is exactly one complete `GET`/`HEAD /healthz` request
    without a body, and whether to close the connection after it; None for anything else
    (the HTTP server proper answers it)."""
    if not is_probe(data):
        return None
    head_only = data.startswith(b"HEAD ")
    headers = [
        *default_headers,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(verdict.body)).encode()),
    ]
    close = b"\r\nconnection: close\r\n" in data.lower()
    if close:
        headers.append((b"connection", b"close"))
    head = _STATUS_LINES[verdict.status] + b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    return head + b"\r\n" + (b"" if head_only else verdict.body), close
