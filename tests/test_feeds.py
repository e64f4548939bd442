"""Feed parsing of each format and of broken input."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from newswatch.fetch.feeds import html_to_text, parse_feed

FIX = Path(__file__).parent / "fixtures" / "feeds"


def read(name: str) -> bytes:
    return (FIX / name).read_bytes()


RSS091 = b"""<?xml version="1.0"?>
<rss version="0.91"><channel><title>Old School</title><link>http://old.example/</link>
<language>en-gb</language>
<item><title>First &amp; foremost</title><link>http://old.example/1</link>
<description>&lt;p&gt;Hello &lt;b&gt;world&lt;/b&gt;&lt;/p&gt;</description></item>
</channel></rss>"""

RSS10 = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="http://rdf.example/"><title>RDF Site</title><link>http://rdf.example/</link>
<description>d</description></channel>
<item rdf:about="http://rdf.example/a"><title>An RDF item</title><link>http://rdf.example/a</link>
<dc:date>2026-03-01T08:30:00+02:00</dc:date><dc:creator>Ann Author</dc:creator></item>
</rdf:RDF>"""

ATOM03 = b"""<?xml version="1.0" encoding="utf-8"?>
<feed version="0.3" xmlns="http://purl.org/atom/ns#"><title>Atom Zero Three</title>
<link rel="alternate" type="text/html" href="http://a03.example/"/>
<entry><title>Entry one</title><link rel="alternate" type="text/html" href="http://a03.example/1"/>
<id>tag:a03.example,2005:1</id><issued>2005-07-31T12:29:29Z</issued>
<summary>Short summary</summary></entry></feed>"""


def test_rss_091_with_html_summary():
    feed = parse_feed(RSS091, url="http://old.example/rss")
    assert feed.is_feed and feed.error is None
    assert feed.title == "Old School" and feed.language == "en-gb"
    [entry] = feed.entries
    assert entry.title == "First & foremost"
    assert entry.summary == "Hello world"
    assert entry.url == "http://old.example/1"


def test_rss_10_rdf_with_dublin_core():
    [entry] = parse_feed(RSS10, url="http://rdf.example/rss").entries
    assert entry.title == "An RDF item" and entry.author == "Ann Author"
    assert entry.published == datetime(2026, 3, 1, 6, 30, tzinfo=UTC)


def test_rss_20_real_capture():
    feed = parse_feed(read("wapowellness.xml"), url="http://feeds.washingtonpost.com/x")
    assert feed.is_feed and len(feed.entries) > 10
    assert all(e.url and e.url.startswith("http") for e in feed.entries)
    assert all(e.published is not None for e in feed.entries)
    assert len({e.guid for e in feed.entries}) == len(feed.entries)


def test_atom_03_and_10():
    a03 = parse_feed(ATOM03, url="http://a03.example/atom")
    assert a03.version == "atom03" and a03.entries[0].guid == "tag:a03.example,2005:1"
    assert a03.entries[0].published == datetime(2005, 7, 31, 12, 29, 29, tzinfo=UTC)
    a10 = parse_feed(read("intertwingly.atom"), url="http://intertwingly.net/blog/index.atom")
    assert a10.version == "atom10" and len(a10.entries) == 20
    # Full content longer than the summary is kept as the text.
    assert any(e.text and len(e.text) > len(e.summary or "") for e in a10.entries)


def test_relative_links_resolve_against_the_feed_url():
    feed = parse_feed(read("rss-with-relative-urls.xml"), url="https://www.arcgames.com/en/rss")
    assert feed.entries and all(e.url.startswith("https://www.arcgames.com/") for e in feed.entries)


def test_json_feed_10_and_11():
    v1 = parse_feed(
        read("jsonfeed-v1-simple.json"),
        url="https://example.org/feed.json",
        content_type="application/feed+json",
    )
    assert v1.is_feed and v1.version == "json" and v1.entries
    v11 = parse_feed(read("jsonfeed-v1.1-microblog.json"), url="https://example.org/feed.json")
    assert v11.is_feed and v11.entries
    entry = v11.entries[0]
    assert entry.guid and entry.url and entry.url.startswith("https://")
    assert entry.author == "Brent Simmons" and entry.published and entry.published.tzinfo


def test_json_feed_errors_name_the_place():
    broken = parse_feed(
        b'{"version": "https://jsonfeed.org/version/1",\n "items": [1, }',
        url="https://x.org/f.json",
    )
    assert not broken.is_feed and broken.error.startswith("line 2, col")
    missing = parse_feed(read("invalid-missing-items.json"), url="https://x.org/f.json")
    assert missing.is_feed and "items" in (missing.error or "") and missing.entries == []
    odd = parse_feed(
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "1"},'
        b' {"id": "2", "title": "Fine"}, 7]}',
        url="https://x.org/f.json",
    )
    assert [e.title for e in odd.entries] == ["Fine"]
    assert "items[0]" in odd.error and "items[2]" in odd.error


def test_malformed_feed_keeps_what_is_recoverable_and_says_where():
    feed = parse_feed(read("saxerror.xml"), url="http://example.com/feed")
    assert feed.is_feed
    assert feed.error and "line" in feed.error and "col" in feed.error
    titles = [e.title for e in feed.entries]
    assert "Good Item" in titles and "Item After Error" in titles


def test_html_page_is_not_a_feed():
    feed = parse_feed(read("notafeed.html"), url="http://example.com/", content_type="text/html")
    assert not feed.is_feed and "HTML" in feed.error and feed.entries == []


def test_empty_and_binary_bodies():
    assert parse_feed(b"", url="x").error == "empty body"
    junk = parse_feed(bytes(range(256)) * 20, url="http://x/")
    assert not junk.is_feed and junk.error


def test_entity_expansion_bomb_is_refused():
    entities = (
        '<!ENTITY a0 "'
        + "x" * 30
        + '">'
        + "".join(f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
    )
    bomb = (
        f'<?xml version="1.0"?><!DOCTYPE rss [{entities}]><rss version="2.0"><channel>'
        "<title>&a9;</title><item><title>t</title><description>&a9;</description></item>"
        "</channel></rss>"
    ).encode()
    feed = parse_feed(bomb, url="http://x/")
    # Expanded, &a9; would be 30 GB; nothing of that size may come back.
    assert len(feed.title or "") < 1000
    assert all(len(e.summary or "") < 1000 for e in feed.entries)
    assert feed.error


def _cp1251_feed(declared: str | None) -> bytes:
    head = f'<?xml version="1.0" encoding="{declared}"?>' if declared else '<?xml version="1.0"?>'
    body = (
        "<rss version='2.0'><channel><title>Новости</title>"
        "<item><title>Министр обороны встретился с коллегой</title>"
        "<link>http://ru.example/1</link></item></channel></rss>"
    )
    return head.encode() + body.encode("cp1251")


def test_undeclared_charset_is_detected():
    feed = parse_feed(_cp1251_feed(None), url="http://ru.example/rss")
    assert feed.entries[0].title == "Министр обороны встретился с коллегой"
    assert feed.title == "Новости"


def test_charset_from_http_header_when_the_document_declares_none():
    feed = parse_feed(
        _cp1251_feed(None),
        url="http://ru.example/rss",
        content_type="application/rss+xml; charset=windows-1251",
    )
    assert feed.entries[0].title == "Министр обороны встретился с коллегой"


def test_wrong_declared_charset_is_recovered_or_reported():
    feed = parse_feed(_cp1251_feed("utf-8"), url="http://ru.example/rss")
    # Bytes that are not UTF-8 under a UTF-8 declaration: detected, decoded, and reported.
    assert feed.entries[0].title == "Министр обороны встретился с коллегой"
    assert "decoded as cp1251" in feed.error


def test_missing_charset_with_right_http_header_overrides_nothing():
    utf8 = _cp1251_feed("windows-1251")
    feed = parse_feed(utf8, url="http://ru.example/rss", content_type="text/xml")
    assert feed.entries[0].title == "Министр обороны встретился с коллегой"


def test_html_to_text():
    assert html_to_text("<p>One</p><p>Two &amp; three</p>") == "One\nTwo & three"
    assert html_to_text("plain") == "plain"
    assert html_to_text("") is None
    assert html_to_text("<<<>>>") is not None


BASES = b"""<?xml version="1.0"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="sub/">
<title>Bases</title><link href="index.html"/>
<entry xml:base="../other/"><id>t3_relative</id><title>One</title><link href="one.html"/>
<summary type="html">&lt;p&gt;Text &lt;a href="x.html"&gt;here&lt;/a&gt;&lt;/p&gt;</summary></entry>
<entry><id>https://abs.example/2</id><title>Two</title><link href="/two"/></entry>
</feed>"""


def test_memoised_url_joins_give_what_feedparser_gives(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """feedparser's URL joins are memoised (decision 0221): the same feeds parse to the same
    entries (links, GUIDs, xml:base) with the memo and with feedparser's own functions."""
    import feedparser.mixin
    import feedparser.urls

    bodies = [BASES, read("rss-with-relative-urls.xml"), read("intertwingly.atom")]
    memoised = [parse_feed(b, url="https://feeds.example/dir/feed.xml") for b in bodies]
    # The memo is in place and serves the repeated joins of the base URI.
    join = feedparser.mixin.make_safe_absolute_uri
    assert join.cache_info().hits > 0  # type: ignore[attr-defined]
    monkeypatch.setattr(
        feedparser.mixin, "make_safe_absolute_uri", feedparser.urls.make_safe_absolute_uri
    )
    monkeypatch.setattr(feedparser.mixin, "_urljoin", feedparser.urls._urljoin)
    plain = [parse_feed(b, url="https://feeds.example/dir/feed.xml") for b in bodies]
    assert memoised == plain
    first = memoised[0].entries[0]
    # A relative id is resolved as feedparser resolves it, against the bases that apply.
    assert first.guid == "https://feeds.example/dir/other/t3_relative"
    assert first.url == "https://feeds.example/dir/other/one.html"
    assert first.summary == "Text here"
    assert memoised[0].entries[1].url == "https://feeds.example/two"
