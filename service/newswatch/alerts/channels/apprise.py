"""Any of apprise's services (chat, push, SMS ...) through its URLs."""

from __future__ import annotations

import asyncio
from typing import Any

import apprise

from newswatch.alerts.channels import SendResult, summary_line
from newswatch.alerts.channels.email import plain_text
from newswatch.alerts.config import ChannelConfig


class AppriseChannel:
    def __init__(self, config: ChannelConfig):
        self.name = config.name
        self.config = config

    def _send_blocking(self, title: str, body: str) -> bool:
        notifier = apprise.Apprise()
        for url in self.config.urls:
            notifier.add(url)
        return bool(notifier.notify(title=title, body=body))

    async def send(self, payloads: list[dict[str, Any]]) -> SendResult:
        title = summary_line(payloads[0])
        if len(payloads) > 1:
            title = f"{len(payloads)} events: {title} and more"
        try:
            ok = await asyncio.to_thread(self._send_blocking, title, plain_text(payloads))
        except Exception as exc:  # apprise plugins raise anything
            return SendResult(False, error=f"{type(exc).__name__}: {exc}")
        return SendResult(True) if ok else SendResult(False, error="apprise: not delivered")

    async def aclose(self) -> None:
        return None
