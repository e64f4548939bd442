"""Webhook channel: a signed JSON POST (format and verification in docs/webhooks.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from newswatch import __version__
from newswatch.alerts.channels import SendResult
from newswatch.alerts.config import ChannelConfig
from newswatch.fetch.http import parse_retry_after

# Statuses worth retrying; any other 4xx means the request itself is wrong.
RETRYABLE = {408, 409, 425, 429}


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Newswatch-Signature header: t=<unix time>,v1=<hex HMAC-SHA256>."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def body_of(payloads: list[dict[str, Any]]) -> tuple[bytes, str]:
    """One notification as itself; several (a group_wait batch or a digest) as a list."""
    if len(payloads) == 1:
        doc: dict[str, Any] = {"type": "notification", **payloads[0]}
        key = payloads[0]["idempotency_key"]
    else:
        keys = sorted(p["idempotency_key"] for p in payloads)
        key = "batch:" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:32]
        doc = {"type": "batch", "idempotency_key": key, "notifications": payloads}
    return json.dumps(doc, ensure_ascii=False, sort_keys=True).encode(), key


class WebhookChannel:
    def __init__(self, config: ChannelConfig):
        self.name = config.name
        self.config = config
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout),
            follow_redirects=False,
            headers={"User-Agent": f"newswatch/{__version__}"},
        )

    async def send(self, payloads: list[dict[str, Any]]) -> SendResult:
        body, key = body_of(payloads)
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        headers.update(self.config.headers)
        if self.config.secret:
            headers["X-Newswatch-Signature"] = sign(self.config.secret, int(time.time()), body)
        try:
            response = await self.client.post(self.config.url, content=body, headers=headers)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            return SendResult(False, error=f"{type(exc).__name__}: {exc}".strip(": "))
        status = response.status_code
        if 200 <= status < 300:
            return SendResult(True, status)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        permanent = 400 <= status < 500 and status not in RETRYABLE
        return SendResult(
            False, status, f"HTTP {status}", retry_after=retry_after, permanent=permanent
        )

    async def aclose(self) -> None:
        await self.client.aclose()
