"""The API's share of the store: a bounded number of requests at once, 503 beyond it.

Handlers that read the store run in worker threads with connections of the API's own pool.
Without a bound, every client adds a thread waiting for a connection; with one, a request that
cannot start within `wait` seconds is answered at once with 503 and Retry-After, and
ingestion, which has connections of its own, is not touched. Health probes pass ungated.
"""

from __future__ import annotations

import asyncio

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from newswatch.api.errors import busy_response
from newswatch.prometheus_registry import API_REJECTED

UNGATED_PATHS = ("/healthz", "/readyz", "/static/")
QUEUE_WAIT = 1.0  # seconds a request may wait for its turn


class ConcurrencyGate:
    """Pure ASGI middleware: at most `limit` gated requests in the app at once."""

    def __init__(self, app: ASGIApp, limit: int, wait: float = QUEUE_WAIT):
        self.app = app
        self.wait = wait
        self._slots = asyncio.Semaphore(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNGATED_PATHS):
            await self.app(scope, receive, send)
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), self.wait)
        except TimeoutError:
            API_REJECTED.inc()
            response: JSONResponse = busy_response("too many requests at once")
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._slots.release()
