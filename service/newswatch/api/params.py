"""Parsing of query parameters shared by the API routes and usable from the CLI."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from newswatch.api.errors import bad_parameter
from newswatch.durations import parse_duration

DEFAULT_LIMIT = 50
MAX_LIMIT = 200  # larger page sizes are capped, not refused
MAX_ID = 2**31 - 1  # ids are 32-bit integers on Postgres


def parse_since(value: str | None, parameter: str = "since") -> datetime | None:
    """An age ("24h", "7d") or an ISO 8601 date/time; naive times are UTC."""
    if value is None or value == "":
        return None
    try:
        return datetime.now(UTC) - parse_duration(value)
    except (ValueError, OverflowError):
        pass
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise bad_parameter(
            parameter, f"{value!r} is neither an age (24h, 7d) nor an ISO 8601 date/time"
        ) from None


def cap_limit(limit: int) -> int:
    return max(1, min(limit, MAX_LIMIT))


def clean_text(value: str | None) -> str | None:
    """A text query without NUL characters (Postgres refuses them), or None when empty."""
    if value is None:
        return None
    value = value.replace("\x00", "").strip()
    return value or None


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the sort key (a time) and the id of its last row."""

    at: datetime
    id: int

    def encode(self) -> str:
        raw = json.dumps([self.at.isoformat(), self.id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str | None, parameter: str = "cursor") -> Cursor | None:
        if not value:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            at, ident = json.loads(raw)
            when = datetime.fromisoformat(at)
            if not isinstance(ident, int) or isinstance(ident, bool):
                raise ValueError("id")
            if not 0 <= ident <= MAX_ID:
                raise ValueError("id")
            when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
            return cls(when, ident)
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, OverflowError):
            raise bad_parameter(
                parameter, "not a cursor returned by this API (use next_cursor as given)"
            ) from None


EVENT_SORTS = ("latest", "size", "growth")


@dataclass(frozen=True)
class EventCursor:
    """Where a page of events ended: the sort, its key and id of the last row, and the time
    the first page was read (growth is counted up to it, so the pages of one list agree)."""

    sort: str
    key: datetime | int
    id: int
    as_of: datetime

    def encode(self) -> str:
        key = self.key.isoformat() if isinstance(self.key, datetime) else self.key
        raw = json.dumps([self.sort, key, self.id, self.as_of.isoformat()]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str | None, sort: str, parameter: str = "cursor") -> EventCursor | None:
        """The cursor, which must come from a list in the same `sort`."""
        if not value:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            got_sort, key, ident, as_of = json.loads(raw)
            if got_sort not in EVENT_SORTS or not _plain_int(ident) or not 0 <= ident <= MAX_ID:
                raise ValueError("sort or id")
            when = _utc(datetime.fromisoformat(as_of))
            if got_sort == "latest":
                key = _utc(datetime.fromisoformat(key))
            elif not _plain_int(key):
                raise ValueError("key")
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, OverflowError):
            raise bad_parameter(
                parameter, "not a cursor returned by this API (use next_cursor as given)"
            ) from None
        if got_sort != sort:
            raise bad_parameter(
                parameter, f"this cursor pages a list sorted by {got_sort}, not by {sort}"
            )
        return cls(got_sort, key, ident, when)


def _plain_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _utc(when: datetime) -> datetime:
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
