"""News sitemaps as sources (`kind: sitemap`): `<urlset>` (Google News extensions included)
and `<sitemapindex>`, plain or gzipped.

New `<url>` entries become articles with their `news:publication_date` (else `lastmod`) and
`news:title`; each new page is fetched once for its main text (fetch/page_sources.py). An index is
followed one level down, to its most recently modified sitemaps.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from newswatch.fetch.http import FetchResult, URLCheck
from newswatch.fetch.page_sources import (
    MAX_ARTICLES_PER_POLL,
    ArticleBatch,
    Candidate,
    PageSupport,
    entry_from,
)
from newswatch.fetch.source_kinds import BodyResult, PollContext, body_head
from newswatch.shared_types import FetchOutcome, ParsedEntry, SourceKind
from newswatch.store.sources import SourceSnapshot

if TYPE_CHECKING:
    from lxml import etree

SITEMAP_ACCEPT = "application/xml, text/xml;q=0.9, application/x-gzip;q=0.8, */*;q=0.1"
# Child sitemaps of an index read per poll: the most recently modified ones.
MAX_CHILD_SITEMAPS = 3
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class SitemapURL:
    loc: str
    lastmod: datetime | None = None
    published: datetime | None = None
    title: str | None = None
    language: str | None = None

    @property
    def when(self) -> datetime | None:
        return self.published or self.lastmod


@dataclass
class ParsedSitemap:
    is_index: bool = False
    urls: list[SitemapURL] = field(default_factory=list)
    error: str | None = None


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    value = value.strip().replace("Z", "+00:00")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress a .gz sitemap, refusing more than `limit` bytes (no gzip bombs)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit:
        raise ValueError(f"gzipped sitemap over the limit of {limit} bytes")
    return out


def _local(tag: object) -> str:
    # "{namespace}name" or "name" (what lxml's QName(tag).localname gives); comments and
    # processing instructions have no string tag.
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _child_text(element: etree._Element, *path: str) -> str | None:
    """Text of the first descendant along `path` of local names (namespaces ignored)."""
    current = [element]
    for name in path:
        current = [c for e in current for c in e if _local(c.tag) == name]
        if not current:
            return None
    text = (current[0].text or "").strip()
    return text or None


def parse_sitemap(body: bytes, limit: int = 50 * 1024 * 1024) -> ParsedSitemap:
    """Parse a sitemap or sitemap index. Never raises: `error` says what is wrong."""
    from lxml import etree  # imported when a sitemap is read, not with the service

    try:
        if body.startswith(GZIP_MAGIC):
            body = gunzip(body, limit)
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, recover=True, huge_tree=False
        )
        root = etree.fromstring(body, parser)
    except (etree.XMLSyntaxError, ValueError, zlib.error) as exc:
        return ParsedSitemap(error=f"not a sitemap: {exc}")
    if root is None or _local(root.tag) not in ("urlset", "sitemapindex"):
        found = _local(root.tag) if root is not None else "nothing"
        return ParsedSitemap(error=f"not a sitemap: root element is <{found}>")
    out = ParsedSitemap(is_index=_local(root.tag) == "sitemapindex")
    item = "sitemap" if out.is_index else "url"
    for element in root:
        if _local(element.tag) != item:
            continue
        loc = _child_text(element, "loc")
        if not loc or not loc.lower().startswith(("http://", "https://")):
            continue
        out.urls.append(
            SitemapURL(
                loc=loc,
                lastmod=_date(_child_text(element, "lastmod")),
                published=_date(_child_text(element, "news", "publication_date")),
                title=_child_text(element, "news", "title"),
                language=_child_text(element, "news", "publication", "language"),
            )
        )
    return out


def _newest_first(urls: list[SitemapURL]) -> list[SitemapURL]:
    oldest = datetime.min.replace(tzinfo=UTC)
    # Stable: undated entries keep their document order, after the dated ones.
    return sorted(urls, key=lambda u: u.when or oldest, reverse=True)


async def _children(
    support: PageSupport, poller: PollContext, source: SourceSnapshot, index: ParsedSitemap
) -> tuple[list[SitemapURL], list[FetchResult]]:
    urls: list[SitemapURL] = []
    fetches: list[FetchResult] = []
    checks = support.checks(source)
    for child in _newest_first(index.urls)[:MAX_CHILD_SITEMAPS]:
        result = await poller.fetcher.get(child.loc, accept=SITEMAP_ACCEPT, check_url=checks)
        fetches.append(result)
        if result.outcome != FetchOutcome.OK:
            continue
        parsed = await poller.run_cpu(parse_sitemap, result.body, poller.fetcher.max_body)
        if parsed.error or parsed.is_index:  # one level of indexes only
            result.outcome = FetchOutcome.PARSE_ERROR
            result.error = parsed.error or "sitemap index inside a sitemap index: not followed"
            continue
        urls.extend(parsed.urls)
    return urls, fetches


def _entries(batch: ArticleBatch, by_url: dict[str, SitemapURL]) -> list[ParsedEntry]:
    """Extracted pages, plus titled entries whose page gave no text (like a feed entry)."""
    out: list[ParsedEntry] = []
    for candidate, result, ex in batch.fetched:
        item = by_url[candidate.url]
        if ex is not None and ex.text:
            entry = entry_from(candidate, result, ex)
        elif item.title and result.outcome == FetchOutcome.PARSE_ERROR:
            entry = ParsedEntry(url=item.loc)
        else:
            continue  # nothing to store, refused, or a fetch that will be tried again
        entry.title = item.title or entry.title
        entry.published = item.when or entry.published
        entry.language = entry.language or item.language
        out.append(entry)
    return out


def looks_like_sitemap(result: FetchResult) -> bool:
    head = body_head(result)
    return b"<urlset" in head or b"<sitemapindex" in head


class SitemapReader:
    """`kind: sitemap`: a news sitemap (or an index of them) whose new pages are fetched."""

    kind = SourceKind.SITEMAP

    def __init__(self, support: PageSupport):
        self.support = support

    def detects(self, result: FetchResult) -> bool:
        return looks_like_sitemap(result)

    def own_checks(self, source: SourceSnapshot) -> list[URLCheck]:
        return self.support.own_checks(source)

    async def read(
        self, poller: PollContext, source: SourceSnapshot, result: FetchResult
    ) -> BodyResult:
        parsed = await poller.run_cpu(parse_sitemap, result.body, poller.fetcher.max_body)
        if parsed.error:
            return BodyResult(error=parsed.error, detected_kind=self.kind)
        urls = parsed.urls
        fetches: list[FetchResult] = []
        if parsed.is_index:
            urls, fetches = await _children(self.support, poller, source, parsed)
        ordered = _newest_first(urls)
        by_url = {u.loc: u for u in reversed(ordered)}
        candidates = [Candidate(u.loc, u.title) for u in ordered]
        batch = await self.support.fetch_new(source, candidates, limit=MAX_ARTICLES_PER_POLL)
        return BodyResult(
            entries=_entries(batch, by_url),
            detected_kind=self.kind,
            extra_fetches=[*fetches, *batch.fetches],
            after_ingest=[batch.record],
        )
