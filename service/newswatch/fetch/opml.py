"""OPML import and export: the feeds of an OPML file (nested outlines included), with the line
of each problem so a user can fix the file; and an OPML file of the sources, for another reader
or a later import."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from xml.sax.saxutils import quoteattr

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

try:  # lxml gives line numbers and recovers from broken files
    from lxml import etree
except ImportError:  # pragma: no cover - lxml is a dependency
    etree = None  # type: ignore[assignment]


@dataclass
class OpmlFeed:
    name: str | None
    url: str
    html_url: str | None
    line: int | None


def _attr(el: etree._Element, *names: str) -> str | None:
    for name in names:
        for key, value in el.attrib.items():
            # lxml gives str; its stubs also allow bytes
            if isinstance(value, str) and key.lower() == name.lower() and value.strip():
                return value.strip()
    return None


def parse_opml(data: bytes) -> tuple[list[OpmlFeed], list[str]]:
    """Feeds in an OPML document and problems as "line N: message" strings.

    Outlines without xmlUrl are folders (their children are still read); an outline whose
    xmlUrl is not http(s) is reported and skipped. Entity declarations are refused.
    """
    problems: list[str] = []
    try:
        SafeET.fromstring(data, forbid_dtd=False)  # refuses entity expansion attacks
    except DefusedXmlException as exc:
        return [], [f"line 1: refused: {exc}"]
    except SafeET.ParseError as exc:
        line, col = getattr(exc, "position", (None, None))
        problems.append(f"line {line}: col {col}: not well-formed XML; reading what is recoverable")
    parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        return [], [*problems, f"line {exc.lineno}: {exc.msg}"]
    if root is None:
        return [], [*problems, "line 1: no OPML document"]
    if not isinstance(root.tag, str) or root.tag.lower() != "opml":
        problems.append(f"line {root.sourceline}: root element is <{root.tag}>, not <opml>")
    feeds: list[OpmlFeed] = []
    for el in root.iter("outline"):
        url = _attr(el, "xmlUrl")
        if url is None:
            if _attr(el, "type") in ("rss", "atom") and len(el) == 0:
                problems.append(
                    f"line {el.sourceline}: outline of type {_attr(el, 'type')} without xmlUrl"
                )
            continue
        if not url.lower().startswith(("http://", "https://")):
            problems.append(f"line {el.sourceline}: xmlUrl is not an http(s) URL: {url[:100]!r}")
            continue
        feeds.append(
            OpmlFeed(
                name=_attr(el, "title", "text"),
                url=url,
                html_url=_attr(el, "htmlUrl"),
                # lxml-stubs 0.5 declares sourceline as "..."; lxml gives int | None.
                line=el.sourceline,  # type: ignore[arg-type]
            )
        )
    return feeds, problems


def write_opml(feeds: Iterable[OpmlFeed], title: str = "newswatch sources") -> bytes:
    """An OPML 2.0 document with one `rss` outline a feed (`text`/`title` its name)."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<opml version="2.0">',
        "  <head>",
        f"    <title>{_text(title)}</title>",
        f"    <dateCreated>{format_datetime(datetime.now(UTC), usegmt=True)}</dateCreated>",
        "  </head>",
        "  <body>",
    ]
    for feed in feeds:
        name = feed.name or feed.url
        attrs = f'type="rss" text={quoteattr(name)} title={quoteattr(name)}'
        attrs += f" xmlUrl={quoteattr(feed.url)}"
        if feed.html_url:
            attrs += f" htmlUrl={quoteattr(feed.html_url)}"
        lines.append(f"    <outline {attrs}/>")
    lines += ["  </body>", "</opml>", ""]
    return "\n".join(lines).encode("utf-8")


def _text(value: str) -> str:
    return quoteattr(value)[1:-1]
