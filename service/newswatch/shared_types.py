"""Types the stages share, and the names of their outcomes: a neutral module.

Every layer may import this module and it imports no part of newswatch, so a value made by one
stage (a `ParsedEntry` from fetching, a `FetchOutcome`) reaches the store and the others
without any of them importing the stage that made it (docs/architecture.md, "Layers").
Not `types.py`: that name is the standard library's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


@dataclass
class ParsedEntry:
    """One item found at a source (feed, page, sitemap, replay), before it is stored.

    `text` is the extracted main text when known (pages, full_text feeds, replay);
    `summary` is what a feed itself carried.
    """

    url: str | None = None
    guid: str | None = None
    title: str | None = None
    summary: str | None = None
    text: str | None = None
    author: str | None = None
    published: datetime | None = None
    language: str | None = None
    canonical_url: str | None = None


class FetchOutcome(StrEnum):
    """What became of one fetch: the `outcome` column of the fetch log and of a source.

    Strings, so that stored values and metric labels stay what they were."""

    OK = "ok"
    NOT_MODIFIED = "not_modified"
    HTTP_ERROR = "http_error"
    NETWORK_ERROR = "network_error"
    TIMEOUT = "timeout"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    BLOCKED = "blocked"  # refused before sending: scheme, robots.txt, unsafe address
    PARSE_ERROR = "parse_error"  # fetched, but nothing could be made of the body
    STORE_ERROR = "store_error"  # the store refused the poll's write


class SourceKind(StrEnum):
    """The `kind` of a source (`sources.kind`): how its body is read. AUTO finds out."""

    AUTO = "auto"
    FEED = "feed"
    PAGE = "page"
    SITEMAP = "sitemap"
    REPLAY = "replay"  # made by `newswatch replay` for a file's outlets; never polled


class LanguageSource(StrEnum):
    """How an article's language is known (`articles.language_source`)."""

    DECLARED = "declared"
    DETECTED = "detected"
