"""Configuration models of alert rules and channels (`rules:` and `channels:`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ChannelConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    type: str


class RuleConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    query: str
    channels: list[str] = []

    def extra_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
