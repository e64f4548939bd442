"""Hostile text never stops language detection: no exception, a language or none."""

from __future__ import annotations

import pytest

from newswatch.fetch.language import detect_language, language_of
from newswatch.shared_types import ParsedEntry

GERMAN = "Bundesregierung beschließt neues Gesetz zur Rente"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{GERMAN} \ud800 und mehr", "de"),  # a lone surrogate from a broken \u escape
        (f"\x00{GERMAN}\x00", "de"),
        (f"\u2028{GERMAN}\r\n\x0b\x0c", "de"),  # line and page breaks of every kind
        ("\ufeff\u200b\u200d" * 50, None),  # invisible characters only
        ("x" * 1_000_000, None),  # a megabyte of one letter: cut, and no language
        (GERMAN * 20_000, "de"),  # a megabyte of text: only the start is read
        ("🙂" * 500, None),
    ],
)
def test_hostile_text_gives_a_language_or_none(text: str, expected: str | None) -> None:
    assert detect_language(text, None) == expected
    assert language_of(ParsedEntry(title=None, summary=text))[0] == expected


def test_a_bad_declaration_is_ignored_not_stored() -> None:
    """A declared value that is no language code (a sentence, markup) is not kept: the text
    decides."""
    entry = ParsedEntry(title=GERMAN, language="<script>alert(1)</script>" * 100)
    assert language_of(entry) == ("de", "detected")
