"""robots.txt: fetched once per origin, cached, and asked before every page or article fetch.

Per RFC 9309: a 4xx robots.txt (none there) allows everything; a 5xx or an unreachable one
disallows everything for a while (the site may be down); rules are matched by the most
specific path (protego). Entries are kept for a day at most. A Crawl-delay (not in RFC 9309,
but widely used) becomes the host's minimum gap between requests, up to MAX_CRAWL_DELAY.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from protego import Protego

from newswatch.fetch.http import Fetcher, URLCheck
from newswatch.shared_types import FetchOutcome

PRODUCT_TOKEN = "newswatch"
CACHE_SECONDS = 24 * 3600.0
RETRY_UNREACHABLE_SECONDS = 600.0
MAX_ROBOTS_BYTES = 512 * 1024  # RFC 9309 asks parsers to read at least 500 KiB
MAX_CACHED_ORIGINS = 10_000
# A larger Crawl-delay would starve a news source (a feed polled every few minutes needs a
# handful of requests each time); such sites are better polled by feed alone.
MAX_CRAWL_DELAY = 60.0


@dataclass
class _Entry:
    rules: Protego | None  # None: everything allowed (no robots.txt)
    disallow_all: str | None  # reason, when the robots.txt could not be read
    expires: float


def robots_url(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), "/robots.txt", "", ""))


class RobotsCache:
    """robots.txt rules per origin (scheme, host, port), shared by every source."""

    def __init__(self, fetcher: Fetcher, agent: str = PRODUCT_TOKEN):
        self.fetcher = fetcher
        self.agent = agent
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def check(self, url: str, guards: Iterable[URLCheck] = ()) -> str | None:
        """A reason to refuse `url`, or None when robots.txt allows it.

        `guards` are the source's other URL checks, applied to the robots.txt fetch too.
        """
        where = robots_url(url)
        if where is None or urlsplit(url).path == "/robots.txt":
            return None
        entry = await self._entry(where, list(guards))
        if entry.disallow_all:
            return entry.disallow_all
        if entry.rules is not None and not entry.rules.can_fetch(url, self.agent):
            return f"disallowed by robots.txt: {urlsplit(url).path or '/'}"
        return None

    async def _entry(self, where: str, guards: list[URLCheck]) -> _Entry:
        entry = self._entries.get(where)
        if entry is not None and entry.expires > time.monotonic():
            return entry
        lock = self._locks.setdefault(where, asyncio.Lock())
        async with lock:  # one fetch per origin, however many articles wait for it
            entry = self._entries.get(where)
            if entry is None or entry.expires <= time.monotonic():
                entry = await self._load(where, guards)
                if len(self._entries) >= MAX_CACHED_ORIGINS:
                    self._entries.clear()
                self._entries[where] = entry
        return entry

    async def _load(self, where: str, guards: list[URLCheck]) -> _Entry:
        result = await self.fetcher.get(where, accept="text/plain", check_url=guards)
        now = time.monotonic()
        if result.outcome == FetchOutcome.OK:
            text = result.body[:MAX_ROBOTS_BYTES].decode("utf-8", "replace")
            rules = Protego.parse(text)
            delay = rules.crawl_delay(self.agent)
            if delay:
                self.fetcher.gate(where).slow_to(min(float(delay), MAX_CRAWL_DELAY))
            return _Entry(rules, None, now + CACHE_SECONDS)
        if result.status is not None and 400 <= result.status < 500 and result.status != 429:
            return _Entry(None, None, now + CACHE_SECONDS)
        reason = f"robots.txt unreachable ({result.error or result.outcome}); not fetching"
        return _Entry(None, reason, now + RETRY_UNREACHABLE_SECONDS)
