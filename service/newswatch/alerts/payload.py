"""What a notification says about an event: documented in docs/webhooks.md. Built from
what the stage loaded for its round; no statements of its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row

from newswatch.alerts.articles import ArticleView
from newswatch.alerts.config import RuleConfig
from newswatch.alerts.judging import Firing

# Articles a payload lists (the latest matching ones); the rest are counted.
PAYLOAD_ARTICLES = 20


def listed(matched_ids: Sequence[int]) -> Sequence[int]:
    """The matching articles a payload lists."""
    return matched_ids[-PAYLOAD_ARTICLES:]


def article_entry(view: ArticleView) -> dict[str, Any]:
    """An article as a payload lists it (the same in every payload of a round: built once)."""
    return {
        "id": view.id,
        "title": view.title,
        "url": view.url,
        "sources": [name for _, name in view.sources],
        "published": view.at.isoformat(),
    }


def event_payload(
    rule: RuleConfig,
    firing: Firing,
    revision: int,
    matched_ids: Sequence[int],
    *,
    event: Row[Any] | None,
    articles: Mapping[int, dict[str, Any]],
    sources: list[str],
    public_url: str | None = None,
) -> dict[str, Any]:
    """The payload of notification `revision` about `firing`. `matched_ids`: the event's
    articles that matched the rule, in order; `event`: its events row (title, first_seen,
    last_seen, article_count, source_count); `articles`: the listed articles' entries
    (`article_entry`), by id; `sources`: the names of every source that carried a matching
    article, also of articles not listed; `public_url`: the service's base URL
    (NEWSWATCH_PUBLIC_URL)."""
    return {
        "rule": rule.name,
        "event_id": firing.event_id,
        "revision": revision,
        "kind": "event" if revision == 1 else "update",
        "url": event_page(public_url, firing.event_id),
        "title": event.title if event else None,
        "first_seen": event.first_seen.isoformat() if event else None,
        "last_seen": event.last_seen.isoformat() if event else None,
        "article_count": event.article_count if event else len(matched_ids),
        "source_count": event.source_count if event else firing.sources,
        "sources": sorted(sources),
        "articles": [articles[i] for i in listed(matched_ids) if i in articles],
        "why": {
            "query": rule.query,
            "matched_terms": firing.terms,
            "matching_articles": len(matched_ids),
            "sources_in_window": firing.sources,
            "min_sources": rule.min_sources,
            "window": rule.window.total_seconds() if rule.window else None,
        },
    }


def event_page(public_url: str | None, event_id: int) -> str | None:
    """The event's page as users reach it; None without NEWSWATCH_PUBLIC_URL."""
    return f"{public_url}/events/{event_id}" if public_url else None
