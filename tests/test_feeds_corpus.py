"""Every one of the 2,801 real feed files in ../shared/data/feeds through the parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from newswatch.fetch.feeds import html_to_text, parse_feed
from newswatch.shared_types import ParsedEntry
from tests.conftest import SHARED_DATA, shared_corpus

FEEDS = SHARED_DATA / "feeds"
MANIFEST = FEEDS / "MANIFEST.tsv"

pytestmark = pytest.mark.slow


def manifest() -> list[dict[str, str]]:
    shared_corpus(MANIFEST)
    lines = MANIFEST.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:] if line]


def test_all_feed_files_parse_without_exceptions():
    rows = manifest()
    assert len(rows) == 2801
    outcomes = {"feed": 0, "feed_with_error": 0, "not_a_feed": 0}
    for row in rows:
        parsed = parse_feed((FEEDS / row["path"]).read_bytes(), url="https://example.org/feed")
        # parse_feed catches everything; a message starting so means a bug to fix.
        assert not (parsed.error or "").startswith("parser failed"), (row["path"], parsed.error)
        for entry in parsed.entries:
            assert isinstance(entry, ParsedEntry)
            assert entry.title or entry.url or entry.summary or entry.text
            assert entry.published is None or entry.published.tzinfo is not None
        if not parsed.is_feed:
            assert parsed.error, row["path"]
            assert not parsed.entries
            outcomes["not_a_feed"] += 1
        elif parsed.error:
            outcomes["feed_with_error"] += 1
        else:
            outcomes["feed"] += 1
    # The corpus mixes good and deliberately broken files; both kinds must be present.
    assert outcomes["feed"] > 2000
    assert outcomes["feed_with_error"] > 100
    assert outcomes["not_a_feed"] > 5


def test_html_and_empty_files_are_not_feeds():
    for row in manifest():
        if row["sniffed_type"] == "html":
            parsed = parse_feed((FEEDS / row["path"]).read_bytes(), url="https://example.org/")
            assert not parsed.is_feed and "HTML" in (parsed.error or "")


def _gofeed_expectations() -> list[tuple[Path, dict]]:
    out = []
    for row in manifest():
        expected = row.get("expected_output") or ""
        if row["path"].startswith("gofeed/testdata/parser/") and expected.endswith(".json"):
            data = json.loads((FEEDS / expected).read_text(encoding="utf-8"))
            out.append((FEEDS / row["path"], data))
    return out


def test_titles_and_entry_counts_agree_with_gofeed_expectations():
    """gofeed's expected parses are another parser's view of the same files: titles and entry
    counts must agree on nearly all of them (the rest are documented differences such as
    entries with neither title nor link, which we drop)."""
    cases = _gofeed_expectations()
    assert len(cases) > 300
    title_agree = count_agree = comparable = 0
    for path, expected in cases:
        parsed = parse_feed(path.read_bytes(), url="https://example.org/feed")
        want_title = html_to_text(expected.get("title"))
        if want_title:
            comparable += 1
            title_agree += (parsed.title or "").split() == want_title.split()
        items = [i for i in expected.get("items") or [] if i.get("title") or i.get("link")]
        count_agree += len(parsed.entries) >= len(items)
    assert title_agree / comparable >= 0.9, (title_agree, comparable)
    assert count_agree / len(cases) >= 0.95, (count_agree, len(cases))
