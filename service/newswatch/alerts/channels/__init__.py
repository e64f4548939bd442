"""Where notifications go. Each channel sends one message for a batch of notifications and
says whether it was accepted, should be retried (and when), or failed for good."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from newswatch.alerts.config import ChannelConfig
from newswatch.config import Settings


@dataclass
class SendResult:
    ok: bool
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None  # seconds the receiver asked us to wait
    permanent: bool = False  # retrying cannot help (e.g. 400, 404)


class Channel(Protocol):
    name: str

    async def send(self, payloads: list[dict[str, Any]]) -> SendResult: ...

    async def aclose(self) -> None: ...


def build_channel(config: ChannelConfig, settings: Settings) -> Channel:
    if config.type == "webhook":
        from newswatch.alerts.channels.webhook import WebhookChannel

        return WebhookChannel(config)
    if config.type == "email":
        from newswatch.alerts.channels.email import EmailChannel

        return EmailChannel(config, settings)
    from newswatch.alerts.channels.apprise import AppriseChannel

    return AppriseChannel(config)


def summary_line(payload: dict[str, Any]) -> str:
    sources = payload.get("source_count") or len(payload.get("sources", []))
    return f"[{payload.get('rule')}] {payload.get('title') or '(untitled)'} ({sources} sources)"
