"""What a notification says about an event: documented in docs/webhooks.md. Built from
what the stage loaded for its round; no statements of its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

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


class EventFields(NamedTuple):
    """What every payload about one event says of it (built once an event and round)."""

    url: str | None
    title: str | None
    first_seen: str | None
    last_seen: str | None
    article_count: int | None  # None: no events row (the payload counts its matches)
    source_count: int | None


def event_fields(event: Row[Any] | None, event_id: int, public_url: str | None) -> EventFields:
    """The event's part of its payloads: `event` is its events row (title, first_seen,
    last_seen, article_count, source_count), if there is one."""
    url = event_page(public_url, event_id)
    if event is None:
        return EventFields(url, None, None, None, None, None)
    return EventFields(
        url,
        event.title,
        event.first_seen.isoformat(),
        event.last_seen.isoformat(),
        event.article_count,
        event.source_count,
    )


def event_payload(
    rule: RuleConfig,
    firing: Firing,
    revision: int,
    matched_ids: Sequence[int],
    *,
    event: EventFields,
    articles: Mapping[int, dict[str, Any]],
    sources: list[str],
) -> dict[str, Any]:
    """The payload of notification `revision` about `firing`. `matched_ids`: the event's
    articles that matched the rule, in order; `event`: the event's fields (`event_fields`);
    `articles`: the listed articles' entries (`article_entry`), by id; `sources`: the names
    of every source that carried a matching article, also of articles not listed."""
    no_row = event.article_count is None
    return {
        "rule": rule.name,
        "event_id": firing.event_id,
        "revision": revision,
        "kind": "event" if revision == 1 else "update",
        "url": event.url,
        "title": event.title,
        "first_seen": event.first_seen,
        "last_seen": event.last_seen,
        "article_count": len(matched_ids) if no_row else event.article_count,
        "source_count": firing.sources if no_row else event.source_count,
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
