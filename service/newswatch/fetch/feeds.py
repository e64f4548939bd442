"""Feed parsing: RSS 0.9x/1.0/2.0 and Atom 0.3/1.0 with feedparser, JSON Feed 1.0/1.1 here.

`parse_feed` never raises: what is recoverable from a malformed feed is returned with
`error` saying what was wrong (with its line and column when the parser knows them), and a
body that is no feed at all (an HTML page, say) comes back with `is_feed=False`.
"""

from __future__ import annotations

import calendar
import html
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin

from newswatch.shared_types import ParsedEntry

# feedparser, lxml and charset-normalizer are imported in the functions that use them: the
# service's process hands bodies to parse workers and never parses a feed itself unless it
# runs without them, so it does not load them at start-up (docs/decisions/0185-lazy-start-up.md).

# feedparser complains about these but parses the feed correctly: not worth an error.
_HARMLESS = ("CharacterEncodingOverride", "NonXMLContentType")
_TAG = re.compile(r"<[^>]+>")
_WS = re.compile(r"[ \t\r\f\v]+")
# A full text in <content> is worth keeping beside the summary when clearly longer.
FULL_CONTENT_RATIO = 1.5


@dataclass
class ParsedFeed:
    title: str | None = None
    link: str | None = None
    language: str | None = None
    entries: list[ParsedEntry] = field(default_factory=list)
    error: str | None = None
    is_feed: bool = True
    version: str | None = None


def html_to_text(fragment: str | None) -> str | None:
    """Plain text of an HTML fragment, paragraphs kept as line breaks."""
    if not fragment:
        return None
    if "<" not in fragment and "&" not in fragment:
        return fragment.strip() or None
    import lxml.html
    from lxml.etree import ParserError

    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
        for br in root.iter("br"):
            br.tail = "\n" + (br.tail or "")
        for block in root.iter("p", "div", "li", "h1", "h2", "h3", "h4", "blockquote"):
            block.tail = "\n" + (block.tail or "")
        text = root.text_content()
    except (ParserError, ValueError):
        text = html.unescape(_TAG.sub(" ", fragment))
    lines = (_WS.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line) or None


def _when(struct: Any) -> datetime | None:
    if not struct:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(struct), tz=UTC)
    except (OverflowError, ValueError, TypeError):
        return None


def _resolve(base: str, link: str | None) -> str | None:
    if not link:
        return None
    link = link.strip()
    try:
        return urljoin(base, link) if base else link
    except ValueError:
        return link


def _describe(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    name = type(exc).__name__
    if name in _HARMLESS:
        return None
    line = getattr(exc, "getLineNumber", None)
    col = getattr(exc, "getColumnNumber", None)
    where = ""
    if callable(line) and callable(col):
        try:
            where = f"line {line()}, col {col()}: "
        except Exception:  # feedparser's exceptions do not always carry a locator
            where = ""
    message = getattr(exc, "getMessage", None)
    text = message() if callable(message) else str(exc)
    return f"{where}{text or name}"


def _entry_language(e: Any) -> str | None:
    """The language an entry declares itself: RSS `dc:language`, else Atom `xml:lang` on its
    title, summary or content (feedparser gives these the feed's `xml:lang` when the entry
    has none of its own)."""
    if e.get("language"):
        return str(e["language"])
    details = [e.get("title_detail"), e.get("summary_detail"), *(e.get("content") or [])]
    for detail in details:
        if detail and detail.get("language"):
            return str(detail["language"])
    return None


def _feedparser_entry(e: Any, base: str, language: str | None) -> ParsedEntry:
    summary_html = e.get("summary")
    content_html = None
    for content in e.get("content") or []:
        value = content.get("value")
        if value and (content_html is None or len(value) > len(content_html)):
            content_html = value
    summary = html_to_text(summary_html)
    text = None
    if content_html:
        content_text = html_to_text(content_html)
        if content_text and len(content_text) > FULL_CONTENT_RATIO * len(summary or ""):
            text = content_text
        summary = summary or content_text
    return ParsedEntry(
        url=_resolve(base, e.get("link")),
        guid=(e.get("id") or None),
        title=html_to_text(e.get("title")),
        summary=summary,
        text=text,
        author=e.get("author") or None,
        published=_when(e.get("published_parsed") or e.get("updated_parsed")),
        language=_entry_language(e) or language,
    )


_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_ENCODING_FALLBACKS = ("CharacterEncodingOverride", "CharacterEncodingUnknown")


def _redecode(body: bytes) -> tuple[bytes, str] | None:
    """When the declared charset is wrong, find the real one (charset-normalizer) and return
    the body as UTF-8 with its declaration fixed."""
    import charset_normalizer

    best = charset_normalizer.from_bytes(body[:200_000]).best()
    if best is None or best.encoding in ("utf_8", "ascii"):
        return None
    try:
        text = body.decode(best.encoding)
    except (UnicodeDecodeError, LookupError):
        return None
    utf8 = text.encode("utf-8")
    fixed = _XML_DECL.sub(b'<?xml version="1.0" encoding="utf-8"?>', utf8, count=1)
    return fixed, best.encoding


def _guessed_encoding(d: Any, body: bytes, content_type: str | None) -> bool:
    """Did feedparser guess the charset (rather than read it from the feed or the server)?"""
    if type(d.get("bozo_exception")).__name__ in _ENCODING_FALLBACKS:
        return True
    if (d.get("encoding") or "").lower() not in ("iso-8859-1", "windows-1252", "cp1252"):
        return False
    if body.isascii():
        return False
    declaration = _XML_DECL.match(body)
    declared = declaration is not None and b"encoding" in declaration.group(0).lower()
    return not declared and "charset" not in (content_type or "").lower()


# URL joins feedparser repeats: its parser joins the base URI with itself at every start tag
# (a third of a parse), and an entry's links and GUIDs with it. Both are pure functions of
# their strings, so a memo returns what they would (docs/decisions/0221-feed-parse-cost.md).
URL_JOIN_MEMO = 4096
MEMOISED_JOINS = ("make_safe_absolute_uri", "_urljoin")


@lru_cache(maxsize=1)
def _feedparser_module() -> Any:
    """feedparser, imported at the first parse, its URL joins memoised."""
    import feedparser
    import feedparser.mixin  # type: ignore[import-untyped]

    for name in MEMOISED_JOINS:
        join = getattr(feedparser.mixin, name, None)
        if callable(join):  # (another feedparser release may name them otherwise: not fatal)
            setattr(feedparser.mixin, name, lru_cache(maxsize=URL_JOIN_MEMO)(join))
    return feedparser


def _feedparser(body: bytes, headers: dict[str, str]) -> Any:
    # Relative URIs inside HTML content are not resolved: only their text is kept.
    return _feedparser_module().parse(
        body, response_headers=headers, sanitize_html=True, resolve_relative_uris=False
    )


def _parse_with_feedparser(body: bytes, url: str, content_type: str | None) -> ParsedFeed:
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    d = _feedparser(body, headers)
    note = None
    if _guessed_encoding(d, body, content_type):
        # feedparser fell back to a guess such as windows-1252, which garbles other scripts.
        fixed = _redecode(body)
        if fixed is not None:
            d = _feedparser(fixed[0], {"content-location": url})
            note = f"declared charset does not fit the bytes; decoded as {fixed[1]}"
    feed = d.get("feed", {})
    version = d.get("version") or None
    entries = d.get("entries", [])
    error = _describe(d.get("bozo_exception")) if d.get("bozo") else None
    if note:
        error = f"{note}; {error}" if error else note
    if not version and not entries:
        looks_html = body.lstrip()[:512].lower()
        kind = (
            "an HTML page"
            if b"<html" in looks_html or b"<!doctype html" in looks_html
            else "no feed"
        )
        return ParsedFeed(
            is_feed=False, error=f"expected a feed, got {kind}" + (f" ({error})" if error else "")
        )
    language = feed.get("language") or None
    base = feed.get("link") or url
    parsed = [_feedparser_entry(e, url or base, language) for e in entries]
    return ParsedFeed(
        title=html_to_text(feed.get("title")),
        link=feed.get("link") or None,
        language=language,
        entries=[p for p in parsed if p.title or p.url or p.summary or p.text],
        error=error,
        version=version,
    )


def _looks_like_json(body: bytes, content_type: str | None) -> bool:
    if content_type and "json" in content_type.lower():
        return True
    return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def _jsonfeed_date(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # OverflowError: 0001-01-01T00:00+01:00 in UTC
        return None


def _jsonfeed_author(item: dict[str, Any], feed: dict[str, Any]) -> str | None:
    for holder in (item, feed):
        authors = holder.get("authors")
        if isinstance(authors, list):
            names = [a.get("name") for a in authors if isinstance(a, dict) and a.get("name")]
            if names:
                return ", ".join(str(n) for n in names)
        author = holder.get("author")
        if isinstance(author, dict) and author.get("name"):
            return str(author["name"])
    return None


def _str(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _parse_jsonfeed(body: bytes, url: str) -> ParsedFeed:
    try:
        data = json.loads(body.decode("utf-8-sig", errors="replace"))
    except json.JSONDecodeError as exc:
        return ParsedFeed(is_feed=False, error=f"line {exc.lineno}, col {exc.colno}: {exc.msg}")
    except RecursionError:  # json's decoder recurses once per level of nesting
        return ParsedFeed(is_feed=False, error="JSON nested too deeply to be a feed")
    if not isinstance(data, dict) or not (
        "jsonfeed.org" in str(data.get("version", "")) or isinstance(data.get("items"), list)
    ):
        return ParsedFeed(is_feed=False, error="expected a feed, got JSON that is not a JSON Feed")
    items = data.get("items")
    problems: list[str] = []
    if not isinstance(items, list):
        problems.append("items: missing or not a list")
        items = []
    language = _str(data.get("language"))
    base = _str(data.get("home_page_url")) or url
    entries: list[ParsedEntry] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"items[{i}]: not an object")
            continue
        link = _str(item.get("url")) or _str(item.get("external_url"))
        content_text = _str(item.get("content_text")) or html_to_text(
            _str(item.get("content_html"))
        )
        summary = _str(item.get("summary")) or content_text
        text = content_text if content_text and content_text != summary else None
        entry = ParsedEntry(
            url=_resolve(url or base, link),
            guid=str(item["id"]).strip() or None if item.get("id") is not None else None,
            title=html_to_text(_str(item.get("title"))),
            summary=summary,
            text=text,
            author=_jsonfeed_author(item, data),
            published=_jsonfeed_date(item.get("date_published") or item.get("date_modified")),
            language=_str(item.get("language")) or language,
        )
        if entry.title or entry.url or entry.summary:
            entries.append(entry)
        else:
            problems.append(f"items[{i}]: no title, URL or content")
    return ParsedFeed(
        title=_str(data.get("title")),
        link=_str(data.get("home_page_url")),
        language=language,
        entries=entries,
        error="; ".join(problems) or None,
        version="json",
    )


def parse_feed(body: bytes, *, url: str = "", content_type: str | None = None) -> ParsedFeed:
    """Parse a feed body of any supported format; never raises."""
    try:
        if not body or not body.strip():
            return ParsedFeed(is_feed=False, error="empty body")
        if _looks_like_json(body, content_type):
            return _parse_jsonfeed(body, url)
        return _parse_with_feedparser(body, url, content_type)
    except Exception as exc:  # the last line of defence: a source must never crash a poll
        return ParsedFeed(is_feed=False, error=f"parser failed: {type(exc).__name__}: {exc}")
