"""Configuration of alert rules and channels (the `rules:` and `channels:` sections)."""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from newswatch.alerts.query import Node, QueryError, parse
from newswatch.durations import parse_duration

_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


def _quiet_hours(value: str | None) -> str | None:
    if value is not None:
        quiet_span(value)
    return value


def _timezone(value: str | None) -> str | None:
    if value is not None:
        zone(value)
    return value


def zone(name: str | None) -> ZoneInfo:
    """The IANA time zone `name` ("Europe/Berlin"); UTC when None."""
    if name is None:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"timezone: unknown time zone {name!r} (an IANA name such as Europe/Berlin or UTC)"
        ) from None


def _duration(value: Any) -> Any:
    if value is None or isinstance(value, timedelta):
        return value
    try:
        return parse_duration(value if isinstance(value, int | float) else str(value))
    except ValueError as exc:
        raise ValueError(str(exc)) from None


class ChannelConfig(BaseModel):
    """Where notifications go: a webhook, email over SMTP, or any apprise URL."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    type: Literal["webhook", "email", "apprise"]
    # webhook
    url: str | None = None
    secret: str | None = None
    headers: dict[str, str] = {}
    timeout: float = Field(10.0, gt=0)
    # email
    to: list[str] = []
    subject_prefix: str = "[newswatch]"
    # apprise
    urls: list[str] = []
    # noise control for everything sent to this channel (a rule's own settings win)
    group_wait: timedelta | None = None
    quiet_hours: str | None = None
    digest: Literal["hourly", "daily"] | None = None
    timezone: str | None = None  # of quiet_hours and digests (IANA name); default UTC
    # How long a failing notification is retried, from its first failure ("24h", "3d");
    # default NEWSWATCH_DELIVERY_RETRY_BUDGET.
    retry_budget: timedelta | None = None

    _duration = field_validator("group_wait", "retry_budget", mode="before")(_duration)

    _quiet = field_validator("quiet_hours")(_quiet_hours)
    _zone = field_validator("timezone")(_timezone)

    @model_validator(mode="after")
    def _needs(self) -> ChannelConfig:
        if self.type == "webhook":
            if not self.url:
                raise ValueError("a webhook channel needs url")
            if not self.url.startswith(("http://", "https://")):
                raise ValueError("url must start with http:// or https://")
        if self.type == "email" and not self.to:
            raise ValueError("an email channel needs to: [addresses]")
        if self.type == "apprise" and not self.urls:
            raise ValueError("an apprise channel needs urls: [...]")
        if self.retry_budget is not None and self.retry_budget.total_seconds() <= 0:
            raise ValueError("retry_budget must be longer than zero")
        return self


class RuleConfig(BaseModel):
    """When to notify: a query over an event's articles, corroborated by N sources."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    query: str
    channels: list[str] = Field(min_length=1)
    min_sources: int = Field(1, ge=1)
    window: timedelta | None = None  # span of publication time for min_sources
    sources: list[str] = []  # only articles from these sources count (names)
    exclude_sources: list[str] = []
    updates: bool = False  # follow-ups when more sources join (at 2x, 4x, ... min_sources)
    group_wait: timedelta | None = None
    repeat_interval: timedelta | None = None  # least time between two notifications
    quiet_hours: str | None = None  # "22:00-07:00": deferred into one digest
    digest: Literal["hourly", "daily"] | None = None
    timezone: str | None = None  # of quiet_hours and digests; default the channel's, else UTC
    enabled: bool = True

    _duration = field_validator("window", "group_wait", "repeat_interval", mode="before")(_duration)

    @field_validator("query")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            parse(value)
        except QueryError as exc:
            raise ValueError(str(exc)) from None
        return value

    _quiet = field_validator("quiet_hours")(_quiet_hours)
    _zone = field_validator("timezone")(_timezone)

    def compiled(self) -> Node:
        return parse(self.query)


def quiet_span(value: str) -> tuple[time, time]:
    """'22:00-07:00' -> (22:00, 07:00); the span may wrap midnight."""
    m = _CLOCK.match(value.strip())
    if m is None:
        raise ValueError(f"quiet_hours must look like 22:00-07:00, not {value!r}")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(f"quiet_hours: not a time of day in {value!r}")
    return time(h1, m1), time(h2, m2)


def check_rule_channels(rules: list[RuleConfig], channels: list[ChannelConfig]) -> None:
    """Every channel a rule names must exist (called by the config file's validator)."""
    names = {c.name for c in channels}
    for i, rule in enumerate(rules):
        for channel in rule.channels:
            if channel not in names:
                raise ValueError(
                    f"rules[{i}].channels: no channel named {channel!r} "
                    f"(channels: {', '.join(sorted(names)) or 'none'})"
                )
