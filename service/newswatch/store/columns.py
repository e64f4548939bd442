"""Column types shared by every table."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.types import DateTime, TypeDecorator, TypeEngine


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as naive UTC and always returned timezone-aware (UTC).

    SQLite has no time zones; storing naive UTC everywhere keeps comparisons and SQL written
    by users the same on SQLite and Postgres.
    """

    impl = DateTime(timezone=False)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[datetime]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLiteDateTime())
        return dialect.type_descriptor(self.impl)

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _SQLiteDateTime(sqlite.DATETIME):
    """SQLite's DATETIME writing the same text ("2026-12-07 02:56:21.000000") with
    datetime.isoformat, in C: SQLAlchemy's own formats each value through a dict of its seven
    fields, and every article, sighting and event row binds several (1.8 % of a replay)."""

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], str | None]:
        def process(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat(" ", "microseconds")

        return process


def as_utc(value: datetime | str) -> datetime:
    """An aware UTC datetime from what the driver returned: aggregates (MIN, MAX) over a
    UTCDateTime column bypass the type, coming back naive, or as text on SQLite."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


# What no text column may hold: control characters other than tab and newline (C0, DEL, C1;
# Postgres refuses NUL, and XML 1.0, the Atom feeds, cannot carry most of them), the
# non-characters U+FFFE and U+FFFF (not XML either) and lone surrogates (not UTF-8).
_UNSTORABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffe\uffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable_text(value: str) -> str:
    """`value` as every store and every reader can hold it: line ends as newlines, other
    control characters removed, lone surrogates (a broken \\u escape in JSON, a bad decoder)
    replaced by U+FFFD. The usual text has none, and costs one regex search."""
    if _UNSTORABLE.search(value) is None:
        return value
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return _SURROGATE.sub("\ufffd", _CONTROL.sub("", value))
