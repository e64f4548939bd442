"""Main-text extraction from article pages (trafilatura), and the decoding that comes first.

`decode_html` turns bytes into text: the HTTP charset, then a `<meta>` charset, then detection
(charset-normalizer). `extract_article` returns the main text without navigation, share bars
or related-article lists, plus title, author, date, language and canonical URL; it never
raises for bad input: `Extracted.error` says why nothing usable came out.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

from newswatch.fetch.language import normalise_language

# trafilatura, lxml and charset-normalizer are imported where they are used: a service whose
# sources are all feeds never loads them (docs/decisions/0185-lazy-start-up.md).

# Below this many characters of main text a page is taken to have none (a JavaScript shell,
# a paywall stub, an error page).
MIN_TEXT_CHARS = 200
# Bytes looked at for a <meta charset> and for sniffing.
SNIFF_BYTES = 4096
_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE
)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
# Byte signatures of common binary formats served by mistake (or by malice) as HTML.
_BINARY_MAGIC = (
    b"%PDF",
    b"\x89PNG",
    b"GIF8",
    b"\xff\xd8\xff",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"RIFF",
    b"\x00\x00\x01\x00",
    b"OggS",
    b"ID3",
    b"\x7fELF",
    b"MZ",
)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_TEXTUAL_TYPES = ("text/", "application/xhtml", "application/xml", "+xml")


class NotHTML(ValueError):
    """The body is not an HTML page (binary data, another media type)."""


@dataclass
class Extracted:
    """What newswatch takes from one article page."""

    url: str | None = None
    title: str | None = None
    author: str | None = None
    published: datetime | None = None
    language: str | None = None
    canonical_url: str | None = None
    text: str | None = None
    encoding: str | None = None
    error: str | None = None  # why there is no usable text, when there is none

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["published"] = self.published.isoformat() if self.published else None
        return data


def _codec(name: str | None) -> str | None:
    """The Python codec for a charset label, or None when Python does not know it."""
    if not name:
        return None
    try:
        return codecs.lookup(name.strip().lower()).name
    except LookupError:
        return None


def header_charset(content_type: str | None) -> str | None:
    match = _HEADER_CHARSET.search(content_type or "")
    return _codec(match.group(1)) if match else None


def meta_charset(body: bytes) -> str | None:
    match = _META_CHARSET.search(body[:SNIFF_BYTES])
    return _codec(match.group(1).decode("ascii", "replace")) if match else None


def check_html(body: bytes, content_type: str | None) -> None:
    """Raise NotHTML when the body cannot be an HTML page, saying why."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media and not any(t in media for t in _TEXTUAL_TYPES):
        raise NotHTML(f"not an HTML page: Content-Type {media}")
    head = body[:SNIFF_BYTES]
    if head.startswith(_BINARY_MAGIC):
        raise NotHTML("binary body (file signature of a non-HTML format)")
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise NotHTML("binary body (NUL bytes)")


def decode_html(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """Text of an HTML body and the charset used: HTTP header, then <meta>, then detection.

    A declared charset that cannot decode the bytes is skipped rather than trusted.
    """
    if body.startswith(codecs.BOM_UTF8):
        return body[len(codecs.BOM_UTF8) :].decode("utf-8", "replace"), "utf-8"
    for declared in (header_charset(content_type), meta_charset(body)):
        if declared:
            try:
                return body.decode(declared), declared
            except UnicodeDecodeError:
                continue
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    import charset_normalizer

    best = charset_normalizer.from_bytes(body[:200_000]).best()
    encoding = _codec(best.encoding) if best is not None else None
    encoding = encoding or "windows-1252"
    return body.decode(encoding, "replace"), encoding


def parse_html(html: str, base_url: str | None = None) -> Any:
    """lxml tree of a decoded page. An XML declaration (XHTML) is dropped: lxml refuses one
    in an already decoded string."""
    import lxml.html

    html = _XML_DECLARATION.sub("", html, count=1)
    return lxml.html.document_fromstring(html, base_url=base_url)


def _canonical(tree: Any, base: str | None) -> str | None:
    """<link rel=canonical>, else og:url; absolute, http(s) only."""
    for xpath in (
        '//link[translate(@rel,"CANONIL","canonil")="canonical"]/@href',
        '//meta[@property="og:url"]/@content',
    ):
        for value in tree.xpath(xpath):
            value = str(value).strip()
            if not value:
                continue
            absolute = urljoin(base, value) if base else value
            if absolute.lower().startswith(("http://", "https://")):
                return absolute
    return None


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _language(tree: Any, found: str | None) -> str | None:
    lang = found
    if not lang:
        values = tree.xpath("/html/@lang") or tree.xpath(
            '//meta[@http-equiv="content-language"]/@content'
        )
        lang = str(values[0]) if values else None
    return normalise_language(lang)


def _trafilatura(tree: Any, url: str | None) -> Any:
    import trafilatura

    return trafilatura.bare_extraction(
        tree,
        url=url,
        with_metadata=True,
        # Precision first: navigation, share bars and "More from" lists must stay out
        # (F1 0.961 on the extraction benchmark, against 0.957 with the defaults).
        favor_precision=True,
        include_comments=False,
        include_tables=True,
        deduplicate=False,
        output_format="python",
    )


def extract_html(html: str, url: str | None = None) -> Extracted:
    """Extract one page given as text."""
    from lxml.etree import ParserError

    out = Extracted(url=url)
    try:
        tree = parse_html(html)
    except (ParserError, ValueError) as exc:
        out.error = f"unparsable HTML: {exc}"
        return out
    out.canonical_url = _canonical(tree, url)
    try:
        doc = _trafilatura(tree, url)
    except Exception as exc:  # a page must never stop its source; say what happened
        out.error = f"extraction failed: {exc!r}"[:500]
        return out
    if doc is not None:
        data = doc.as_dict() if hasattr(doc, "as_dict") else dict(doc)
        out.text = (data.get("text") or "").strip() or None
        out.title = (data.get("title") or "").strip() or None
        out.author = (data.get("author") or "").strip() or None
        out.published = _parse_date(data.get("date"))
        out.language = _language(tree, data.get("language"))
    else:
        out.language = _language(tree, None)
    if out.title is None:
        titles = tree.xpath("//title/text()")
        out.title = " ".join(str(titles[0]).split()) or None if titles else None
    if not out.text or len(out.text) < MIN_TEXT_CHARS:
        size = len(out.text or "")
        out.error = f"no extractable main text ({size} characters; the page may need JavaScript)"
        out.text = None
    return out


def extract_article(
    body: bytes, *, url: str | None = None, content_type: str | None = None
) -> Extracted:
    """Extract one page given as bytes (as fetched): check, decode, extract. Never raises."""
    try:
        check_html(body, content_type)
    except NotHTML as exc:
        return Extracted(url=url, error=str(exc))
    if not body.strip():
        return Extracted(url=url, error="empty body")
    html, encoding = decode_html(body, content_type)
    out = extract_html(html, url)
    out.encoding = encoding
    return out
