"""A webhook receiver that checks signatures, and a real SMTP server, both on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web
from aiosmtpd.controller import Controller

from tests.localserver import LocalServer

SECRET = "test-secret"


def verify(secret: str, header: str, body: bytes, tolerance: float = 300) -> bool:
    """The receiver-side check documented in docs/webhooks.md."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp = int(parts["t"])
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts["v1"])


@dataclass
class Receiver:
    """Accepts signed POSTs; `script` holds the faults to play before answering 200."""

    server: LocalServer
    path: str = "/hook"
    accepted: list[dict] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    bad_signatures: int = 0
    attempts: int = 0
    script: list[str] = field(default_factory=list)  # "500", "timeout", "close", "429"

    def url(self) -> str:
        return self.server.url(self.path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        body = await request.read()
        if not verify(SECRET, request.headers.get("X-Newswatch-Signature", "t=0,v1=x"), body):
            self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        if self.script:
            fault = self.script.pop(0)
            if fault == "500":
                return web.Response(status=500, text="boom")
            if fault == "429":
                return web.Response(status=429, headers={"Retry-After": "1"})
            if fault == "timeout":
                import asyncio

                await asyncio.sleep(5)
                return web.Response(status=200)
            if fault == "close":
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=200)
        key = request.headers["Idempotency-Key"]
        if key not in self.keys:  # what a receiver does with repeats
            self.keys.append(key)
            self.accepted.append(json.loads(body))
        return web.json_response({"ok": True})


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    with LocalServer() as server:
        receiver = Receiver(server)
        server.routes[receiver.path] = receiver.handle
        yield receiver


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append(envelope.content)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def smtp_server() -> Iterator[tuple[_Inbox, int]]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
