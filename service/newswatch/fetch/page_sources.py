"""Web pages as sources: listing pages (`kind: page`), and full text for feeds (`full_text`).

A listing page's same-site links (narrowed by the source's `links` CSS selector and `include`
pattern) are article candidates; each *new* one is fetched once, extracted and stored like a
feed entry. Every article fetch is checked against robots.txt and the private-network guard,
goes through the same per-host limits as feeds, and is written to the fetch log with its
outcome (a page without extractable text is a `parse_error` there, and no article).

`register` adds the page reader, the sitemap reader (fetch/sitemaps.py) and the full-text
step to a poller's source kinds (fetch/source_kinds.py). Article URLs fetched for good are
remembered in the store (store/page_urls.py) and never fetched again.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urldefrag, urlsplit

from sqlmodel import Session

from newswatch.config import Settings
from newswatch.dedupe_keys import canonical_url
from newswatch.fetch.extract import (
    Extracted,
    NotHTML,
    check_html,
    decode_html,
    extract_article,
    parse_html,
)
from newswatch.fetch.http import Fetcher, FetchResult, URLCheck
from newswatch.fetch.netguard import NetGuard
from newswatch.fetch.poll import Poller, count_fetch, looks_like_feed
from newswatch.fetch.robots import RobotsCache
from newswatch.fetch.source_kinds import BodyResult, PollContext, body_head
from newswatch.log import get_logger
from newswatch.shared_types import FetchOutcome, ParsedEntry, SourceKind
from newswatch.store.db import session_scope
from newswatch.store.models import Source
from newswatch.store.page_urls import already_seen, record_seen
from newswatch.store.sources import SourceSnapshot

if TYPE_CHECKING:
    import lxml.html

log = get_logger(__name__)

PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"
# New article pages fetched per poll at most; the rest wait for the next poll (a first poll
# of a big listing or sitemap must not turn into a crawl).
MAX_ARTICLES_PER_POLL = 30
PAGE_KINDS = (SourceKind.PAGE, SourceKind.SITEMAP)
# Outcomes after which an article URL is tried again at the next poll (not remembered in
# `page_urls`). `blocked` depends on robots.txt and the source's options, both of which may
# change.
TRANSIENT = {
    FetchOutcome.NETWORK_ERROR,
    FetchOutcome.TIMEOUT,
    FetchOutcome.RATE_LIMITED,
    FetchOutcome.BLOCKED,
}
# Paths of files that are never articles.
_NOT_PAGES = re.compile(
    r"\.(?:jpe?g|png|gif|webp|svg|ico|css|js|json|xml|rss|atom|pdf|zip|gz|mp[34]|avi|mov|"
    r"docx?|xlsx?|pptx?|txt|woff2?|ttf)$",
    re.IGNORECASE,
)

_SLUG_OR_ID = re.compile(r"\d|\w[-_]\w|\.s?html?$", re.IGNORECASE)


@dataclass
class Candidate:
    """An article URL found at a source, with what the source said about it."""

    url: str
    title: str | None = None
    entry: ParsedEntry | None = None  # the feed or sitemap entry it came from


@dataclass
class Listing:
    title: str | None = None
    links: list[Candidate] = field(default_factory=list)
    error: str | None = None


def site_of(host: str) -> str:
    host = host.lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


def same_site(url: str, base: str) -> bool:
    """Same host as `base`, ignoring "www.", or one of its subdomains."""
    host = site_of(urlsplit(url).hostname or "")
    home = site_of(urlsplit(base).hostname or "")
    return bool(host) and (host == home or host.endswith("." + home))


def _looks_like_article(url: str) -> bool:
    """Default filter when no selector or pattern is given: no section fronts, tag pages,
    pagination, logins or files."""
    path = urlsplit(url).path
    if path in ("", "/") or _NOT_PAGES.search(path):
        return False
    from courlan import is_navigation_page, is_not_crawlable  # imported when pages are read

    if is_navigation_page(url) or is_not_crawlable(url):
        return False
    # Articles end in a slug or an id ("/2024/05/storm-hits-coast", "/a/30279", "x.html");
    # section fronts and site pages in a word ("/world", "/about").
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return bool(_SLUG_OR_ID.search(last))


def _anchors(tree: lxml.html.HtmlElement, selector: str | None) -> list[lxml.html.HtmlElement]:
    if not selector:
        return list(tree.iter("a"))
    found: list[lxml.html.HtmlElement] = []
    for element in tree.cssselect(selector):
        found.extend([element] if element.tag == "a" else element.iter("a"))
    return found


def discover_links(
    body: bytes,
    content_type: str | None,
    base_url: str,
    selector: str | None = None,
    include: str | None = None,
) -> Listing:
    """Article links on a listing page, in page order, each once. Never raises."""
    from cssselect import SelectorError  # lxml and its helpers load when pages are read
    from lxml.etree import ParserError

    try:
        check_html(body, content_type)
        text, _encoding = decode_html(body, content_type)
        tree = parse_html(text, base_url)
    except NotHTML as exc:
        return Listing(error=str(exc))
    except (ParserError, ValueError) as exc:
        return Listing(error=f"unparsable HTML: {exc}")
    tree.make_links_absolute(base_url, resolve_base_href=True, handle_failures="discard")
    titles = tree.xpath("//title/text()")
    listing = Listing(title=" ".join(str(titles[0]).split()) or None if titles else None)
    try:
        anchors = _anchors(tree, selector)
    except (SelectorError, SyntaxError) as exc:
        return Listing(error=f"links: invalid CSS selector: {exc}")
    pattern = re.compile(include) if include else None
    page = canonical_url(base_url)
    seen: set[str] = set()
    for a in anchors:
        href = urldefrag((a.get("href") or "").strip())[0]
        if not href.lower().startswith(("http://", "https://")) or not same_site(href, base_url):
            continue
        if pattern is not None and not pattern.search(href):
            continue
        if not selector and pattern is None and not _looks_like_article(href):
            continue
        key = canonical_url(href)
        if key in seen or key == page:
            continue
        seen.add(key)
        anchor = " ".join(a.text_content().split()) or None
        listing.links.append(Candidate(href, anchor))
    return listing


def is_lasting(result: FetchResult) -> bool:
    """Should this fetch's URL be remembered as done? Network errors, timeouts, 5xx, 429 and
    refusals (robots.txt, unsafe address) are not: the next poll tries again."""
    if result.outcome in TRANSIENT:
        return False
    return not (result.status is not None and result.status >= 500)


@dataclass
class ArticleBatch:
    """Article pages fetched for one poll of one source."""

    source_id: int
    fetched: list[tuple[Candidate, FetchResult, Extracted | None]] = field(default_factory=list)
    done: dict[str, str] = field(default_factory=dict)  # canonical URL -> outcome

    @property
    def fetches(self) -> list[FetchResult]:
        return [result for _c, result, _e in self.fetched]

    def record(self, session: Session, source: Source, _ingest: object) -> None:
        """Remember the URLs fetched for good, in the ingest transaction."""
        record_seen(session, self.source_id, self.done)


def entry_from(candidate: Candidate, result: FetchResult, ex: Extracted) -> ParsedEntry:
    canonical = ex.canonical_url
    # A page may only name a canonical URL on its own site (no hijacking other articles).
    if not canonical or not same_site(canonical, result.final_url):
        canonical = result.final_url
    return ParsedEntry(
        url=result.final_url,
        title=ex.title or candidate.title,
        text=ex.text,
        author=ex.author,
        published=ex.published,
        language=ex.language,
        canonical_url=canonical,
    )


class PageSupport:
    """What page, sitemap and full-text sources share: robots.txt cache, article fetching."""

    def __init__(self, poller: PollContext):
        self.poller = poller
        self.robots = RobotsCache(poller.fetcher, agent="newswatch")

    def checks(self, source: SourceSnapshot) -> list[URLCheck]:
        """URL checks for every fetch made for `source` after its own: guard, robots.txt."""
        guard = NetGuard(
            source.url, allow_private=bool(source.options.get("allow_private_networks"))
        )
        checks: list[URLCheck] = [guard.check]
        if source.options.get("robots", True):
            checks.append(lambda url: self.robots.check(url, [guard.check]))
        return checks

    def own_checks(self, source: SourceSnapshot) -> list[URLCheck]:
        """Checks on the source's own fetch: robots.txt for page and sitemap sources (the
        configured URL itself is trusted by the guard)."""
        auto = source.kind == SourceKind.AUTO
        kind = source.options.get("detected_kind") if auto else source.kind
        if kind not in PAGE_KINDS or not source.options.get("robots", True):
            return []
        return [lambda url: self.robots.check(url)]

    def _seen(self, source_id: int, urls: list[str]) -> set[str]:
        with session_scope(self.poller.pipeline.engine) as session:
            return already_seen(session, source_id, urls)

    async def fetch_new(
        self, source: SourceSnapshot, candidates: list[Candidate], limit: int | None = None
    ) -> ArticleBatch:
        """Fetch and extract the candidates this source has not fetched before."""
        batch = ArticleBatch(source.id)
        unique: dict[str, Candidate] = {}
        for c in candidates:
            unique.setdefault(canonical_url(c.url), c)
        if not unique:
            return batch
        seen = await asyncio.to_thread(self._seen, source.id, list(unique))
        new = [(key, c) for key, c in unique.items() if key not in seen]
        new = new[: limit or MAX_ARTICLES_PER_POLL]
        checks = self.checks(source)
        results = await asyncio.gather(*(self._fetch_one(c, checks) for _k, c in new))
        for (key, candidate), (result, extracted) in zip(new, results, strict=True):
            batch.fetched.append((candidate, result, extracted))
            if is_lasting(result):
                batch.done[key] = result.outcome
            count_fetch("article fetch", source.name, result, result.outcome, result.error)
        return batch

    async def _fetch_one(
        self, candidate: Candidate, checks: list[URLCheck]
    ) -> tuple[FetchResult, Extracted | None]:
        result = await self.poller.fetcher.get(candidate.url, accept=PAGE_ACCEPT, check_url=checks)
        if result.outcome != FetchOutcome.OK:
            return result, None
        extracted = await self.poller.run_cpu(
            extract_article, result.body, url=result.final_url, content_type=result.content_type
        )
        if extracted.error:
            # Recorded on this fetch's log row; no article is made of it.
            result.outcome = FetchOutcome.PARSE_ERROR
            result.error = extracted.error
            return result, None
        return result, extracted


def entries_of(batch: ArticleBatch) -> list[ParsedEntry]:
    """Articles made of the pages that gave text."""
    return [
        entry_from(candidate, result, ex)
        for candidate, result, ex in batch.fetched
        if ex is not None and ex.text
    ]


class PageReader:
    """`kind: page`: a listing page whose new same-site article links are fetched."""

    kind = SourceKind.PAGE

    def __init__(self, support: PageSupport):
        self.support = support

    def detects(self, result: FetchResult) -> bool:
        return looks_like_page(result)

    def own_checks(self, source: SourceSnapshot) -> list[URLCheck]:
        return self.support.own_checks(source)

    async def read(
        self, poller: PollContext, source: SourceSnapshot, result: FetchResult
    ) -> BodyResult:
        options = source.options
        listing = await poller.run_cpu(
            discover_links,
            result.body,
            result.content_type,
            result.final_url,
            options.get("links"),
            options.get("include"),
        )
        if listing.error:
            return BodyResult(error=listing.error, detected_kind=self.kind)
        if not listing.links:
            narrowed = (
                " matching the links selector / include pattern"
                if (options.get("links") or options.get("include"))
                else ""
            )
            return BodyResult(
                error=f"no article links found on the page{narrowed}",
                title=listing.title,
                detected_kind=self.kind,
            )
        batch = await self.support.fetch_new(source, listing.links)
        return BodyResult(
            entries=entries_of(batch),
            title=listing.title,
            detected_kind=self.kind,
            extra_fetches=batch.fetches,
            after_ingest=[batch.record],
        )


class FullTextStep:
    """After a feed is read: with `full_text: true`, each new entry's page is fetched and its
    main text (and the author, language and date the feed left out) filled in."""

    name = "full_text"
    applies_to = frozenset({SourceKind.FEED})

    def __init__(self, support: PageSupport):
        self.support = support

    async def process(self, poller: PollContext, source: SourceSnapshot, body: BodyResult) -> None:
        if not source.options.get("full_text"):
            return
        candidates = [Candidate(e.url, e.title, e) for e in body.entries if e.url]
        # A feed lists its newest entries; all of them are wanted, still within a bound.
        batch = await self.support.fetch_new(source, candidates, limit=4 * MAX_ARTICLES_PER_POLL)
        for candidate, _result, ex in batch.fetched:
            if ex is None or candidate.entry is None:
                continue
            entry = candidate.entry
            entry.text = ex.text
            entry.author = entry.author or ex.author
            entry.language = entry.language or ex.language
            entry.published = entry.published or ex.published
        body.extra_fetches.extend(batch.fetches)
        body.after_ingest.append(batch.record)


def looks_like_page(result: FetchResult) -> bool:
    head = body_head(result)
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head


def detect_kind(result: FetchResult) -> SourceKind | None:
    """For `kind: auto`: sitemap, feed or page from the body, asked in the order the
    registry asks (feed, sitemap, page: see `register`); None when unsure."""
    from newswatch.fetch.sitemaps import looks_like_sitemap

    for kind, looks_like in (
        (SourceKind.FEED, looks_like_feed),
        (SourceKind.SITEMAP, looks_like_sitemap),
        (SourceKind.PAGE, looks_like_page),
    ):
        if looks_like(result):
            return kind
    return None


def register(poller: Poller) -> None:
    """Register the page and sitemap kinds and the full-text step with a poller's source
    kinds (service.POLLER_PLUGINS). Registering twice raises RegistryError."""
    from newswatch.fetch.sitemaps import SitemapReader

    support = PageSupport(poller)
    # For `kind: auto` readers are asked in the order they registered: the feed first (a
    # source once detected as a page may have become a feed), then sitemap, then page (a
    # sitemap is no HTML, but an HTML test is the loosest).
    poller.kinds.register(SitemapReader(support))
    poller.kinds.register(PageReader(support))
    poller.kinds.add_step(FullTextStep(support))


async def fetch_and_extract(url: str, settings: Settings) -> tuple[FetchResult, Extracted]:
    """One page fetched and extracted (`newswatch extract URL`): the same client, limits and
    extraction as page sources; the URL is the user's own choice, so no robots.txt."""
    async with Fetcher(settings) as fetcher:
        result = await fetcher.get(url, accept=PAGE_ACCEPT)
    if result.outcome != FetchOutcome.OK:
        return result, Extracted(url=url, error=result.error or result.outcome)
    extracted = extract_article(result.body, url=result.final_url, content_type=result.content_type)
    return result, extracted
