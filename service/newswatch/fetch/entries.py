"""ParsedEntry: what every kind of source (feed, page, sitemap, replay) hands the pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class ParsedEntry:
    """One item found at a source, before it is stored.

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
