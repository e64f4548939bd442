"""The time an article counts at, defined once: in Python for what the stages hold in
memory, and as the same expression in SQL for what the store counts (an event's span, the
grouping window, a dry run's `since`). tests/test_article_time.py checks that both agree on
SQLite and Postgres.

An article counts at its publication time, unless it has none or claims one more than
FUTURE_SLACK after it was first seen (a clock that is wrong, or a date that is a plan, not a
report): then at its first-seen time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from newswatch.store.columns import UTCDateTime

# How far ahead of the first-seen time a publication time may be (clock skew between hosts).
FUTURE_SLACK = timedelta(hours=1)
_SLACK_MINUTES = int(FUTURE_SLACK.total_seconds()) // 60
assert timedelta(minutes=_SLACK_MINUTES) == FUTURE_SLACK, "the SQL below adds whole minutes"


def article_time(published: datetime | None, first_seen: datetime) -> datetime:
    """The time an article counts at: publication, unless missing or in the future."""
    if published is None or published > first_seen + FUTURE_SLACK:
        return first_seen
    return published


class _SlackAfter(FunctionElement[datetime]):
    """A timestamp column plus FUTURE_SLACK, exact to the microsecond on both stores."""

    type = UTCDateTime()
    name = "slack_after"
    inherit_cache = True


@compiles(_SlackAfter)
def _slack_after(element: _SlackAfter, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = element.clauses
    return f"({compiler.process(value, **kw)} + interval '{_SLACK_MINUTES} minutes')"


@compiles(_SlackAfter, "sqlite")
def _slack_after_sqlite(element: _SlackAfter, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps timestamps as text ("2026-12-07 02:56:21.123456", columns.py) and its
    # date functions round to milliseconds: add the minutes to "YYYY-MM-DD HH:MM" and keep
    # the seconds and their fraction as written, so the comparison is exact.
    value = compiler.process(element.clauses, **kw)
    return (
        f"(strftime('%Y-%m-%d %H:%M', substr({value}, 1, 16), '+{_SLACK_MINUTES} minutes')"
        f" || substr({value}, 17))"
    )


def article_time_sql(published: Any, first_seen: Any) -> ColumnElement[datetime]:
    """`article_time` as an SQL expression over two timestamp columns."""
    in_time = and_(published.is_not(None), published <= _SlackAfter(first_seen))
    return case((in_time, published), else_=first_seen)
