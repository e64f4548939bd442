"""What migrations 0006 and 0015 computed with live code: frozen copies (decision 0094).

0006 normalised the language codes stored before detection existed (fetch/language.py's
`normalise_language`); 0015's downgrade rebuilds rule matches with an article's time
(store/timing.py's `article_time_sql`). Like frozen_search.py, these are the live functions
as they stood on 2026-12-08, copied so that a later change of the live rules does not change
what an old migration does to a store at its revision; the live code never imports this
module. tests/test_migrations_frozen.py checks they still agree with the live ones: when a
live rule changes on purpose, that test is changed to pin the copy to its old answers, not
the copy to the new rule.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from newswatch.store.columns import UTCDateTime

_PRIMARY = re.compile(r"[a-z]{2,3}")
_THREE_LETTER = (
    "ar ara, bg bul, cs ces cze, da dan, de deu ger, el ell gre, en eng, es spa, fa fas per, "
    "fi fin, fr fra fre, he heb, hi hin, hr hrv, hu hun, id ind, it ita, ja jpn, ko kor, "
    "nl nld dut, no nor, pl pol, pt por, ro ron rum, ru rus, sk slk slo, sr srp, sv swe, "
    "th tha, tr tur, uk ukr, vi vie, zh zho chi"
)
_RENAMED = {"iw": "he", "in": "id", "ji": "yi", "jw": "jv", "mo": "ro"} | {
    three: codes.split()[0] for codes in _THREE_LETTER.split(", ") for three in codes.split()[1:]
}
_NO_LANGUAGE = {"und", "mul", "zxx", "mis"}


def normalise_language(code: str | None) -> str | None:
    """The primary language subtag of a declared code, lower case (0006's rule)."""
    if not code:
        return None
    first = code.strip().lower().replace("_", "-").split(",")[0].split(";")[0]
    primary = first.strip().split("-")[0]
    if not _PRIMARY.fullmatch(primary) or primary in _NO_LANGUAGE:
        return None
    return _RENAMED.get(primary, primary)


_SLACK_MINUTES = 60  # FUTURE_SLACK of store/timing.py: one hour


class _FrozenSlackAfter(FunctionElement[datetime]):
    """A timestamp column plus the slack, exact to the microsecond on both stores."""

    type = UTCDateTime()
    name = "frozen_slack_after"
    inherit_cache = True


@compiles(_FrozenSlackAfter)
def _slack_after(element: _FrozenSlackAfter, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = element.clauses
    return f"({compiler.process(value, **kw)} + interval '{_SLACK_MINUTES} minutes')"


@compiles(_FrozenSlackAfter, "sqlite")
def _slack_after_sqlite(element: _FrozenSlackAfter, compiler: SQLCompiler, **kw: Any) -> str:
    # Timestamps are text on SQLite and its date functions round to milliseconds: the minutes
    # go to "YYYY-MM-DD HH:MM", the seconds and their fraction are kept as written.
    value = compiler.process(element.clauses, **kw)
    return (
        f"(strftime('%Y-%m-%d %H:%M', substr({value}, 1, 16), '+{_SLACK_MINUTES} minutes')"
        f" || substr({value}, 17))"
    )


def article_time_sql(published: Any, first_seen: Any) -> ColumnElement[datetime]:
    """An article's time (0015's rule): publication, unless missing or over the slack ahead
    of its first sighting, then the first sighting."""
    in_time = and_(published.is_not(None), published <= _FrozenSlackAfter(first_seen))
    return case((in_time, published), else_=first_seen)
