"""Migrations 0006 and 0015 use frozen copies of two live rules (store/migrations/
frozen_values.py, decision 0094): today the copies must answer as the live rules do."""

from __future__ import annotations

import pytest
from sqlalchemy import column
from sqlalchemy.dialects import postgresql, sqlite

from newswatch.fetch.language import normalise_language
from newswatch.store.columns import UTCDateTime
from newswatch.store.migrations import frozen_values
from newswatch.store.timing import article_time_sql

CODES = [
    None, "", "en", "EN", "en-US", "en_gb", " fr-CA ", "pt_BR", "de, en", "es;q=0.8", "iw",
    "in", "ji", "jw", "mo", "eng", "ger", "chi", "zho", "und", "mul", "zxx", "mis", "x",
    "english", "123", "ru-RU", "zh-Hant-TW", "sr-Latn",
]  # fmt: skip


@pytest.mark.parametrize("code", CODES)
def test_the_frozen_language_rule_answers_as_the_live_one(code: str | None) -> None:
    assert frozen_values.normalise_language(code) == normalise_language(code)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()])
def test_the_frozen_article_time_is_the_live_sql(dialect: object) -> None:
    published, first_seen = column("published", UTCDateTime()), column("first_seen", UTCDateTime())
    frozen = frozen_values.article_time_sql(published, first_seen).compile(dialect=dialect)  # type: ignore[arg-type]
    live = article_time_sql(published, first_seen).compile(dialect=dialect)  # type: ignore[arg-type]
    assert "interval" in str(live) or "strftime" in str(live)
    assert str(frozen) == str(live)
