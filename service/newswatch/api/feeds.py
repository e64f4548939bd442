"""Atom feeds of events, for feed readers: every event (filtered like /api/events), or the
events one alert rule notified about.

    GET /feeds/events.atom?q=…&min_sources=2&since=7d
    GET /feeds/rules/{rule}.atom

An entry is one event: its title and source count, updated at its last activity (so a reader
shows it again as more outlets report it), with the newest reports linked. Entry ids are
stable (`urn:newswatch:event:ID`). When NEWSWATCH_API_TOKEN is set, a reader passes it as
`?token=…` (feed readers send no Authorization header).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Annotated
from xml.etree import ElementTree as ET

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from newswatch.api import events
from newswatch.api.errors import ApiError
from newswatch.api.params import clean_text, parse_since
from newswatch.api.routes import SessionDep
from newswatch.api.schemas import EventOut
from newswatch.store.columns import storable_text
from newswatch.store.rule_feeds import notified_events

router = APIRouter(prefix="/feeds", include_in_schema=False)

ATOM = "http://www.w3.org/2005/Atom"
MEDIA_TYPE = "application/atom+xml; charset=utf-8"
ENTRIES = 50
ARTICLES_LISTED = 10
DEFAULT_SINCE = timedelta(days=7)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: storable_text(v) for k, v in attrs.items()})
    if text is not None:
        # XML cannot carry control characters: text stored before they were removed at the
        # store's boundary (SQLite kept a NUL of a feed's title) must not break the feed.
        el.text = storable_text(text)
    return el


def _summary(event: EventOut, articles: Sequence[tuple[object, str | None]]) -> str:
    """HTML of the entry: counts, then the newest reports linked with their outlets."""
    parts = [
        f"<p>{event.article_count} reports from {event.source_count} sources, "
        f"{escape(_iso(event.first_seen))} to {escape(_iso(event.last_seen))}.</p>",
        "<ul>",
    ]
    for article, source in list(reversed(articles))[:ARTICLES_LISTED]:
        title = escape(getattr(article, "title", None) or "(no title)")
        url = getattr(article, "url", None)
        link = f'<a href="{escape(url, quote=True)}">{title}</a>' if url else title
        parts.append(f"<li>{link} — {escape(source or 'unknown source')}</li>")
    parts.append("</ul>")
    return "".join(parts)


def render_feed(
    request: Request,
    feed_title: str,
    feed_id: str,
    items: list[EventOut],
    articles: Mapping[int, Sequence[tuple[object, str | None]]],
    updated: dict[int, datetime] | None = None,
) -> Response:
    """The Atom document of `items` (each entry updated at `updated[id]`, else last_seen).
    Links go to NEWSWATCH_PUBLIC_URL when set (behind a proxy the request's own address is
    not the one readers can reach), else to the address the request came to."""
    public = request.app.state.settings.public_url
    base = public or str(request.base_url).rstrip("/")
    query = f"?{request.url.query}" if request.url.query else ""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _sub(feed, f"{{{ATOM}}}title", feed_title)
    _sub(feed, f"{{{ATOM}}}id", feed_id)
    _sub(feed, f"{{{ATOM}}}link", rel="self", href=f"{base}{request.url.path}{query}")
    _sub(feed, f"{{{ATOM}}}link", rel="alternate", href=f"{base}/")
    _sub(feed, f"{{{ATOM}}}generator", "newswatch")
    times = {e.id: (updated or {}).get(e.id, e.last_seen) for e in items}
    newest = max(times.values(), default=datetime.now(UTC))
    _sub(feed, f"{{{ATOM}}}updated", _iso(newest))
    for event in items:
        entry = _sub(feed, f"{{{ATOM}}}entry")
        title = event.title or f"event {event.id}"
        _sub(entry, f"{{{ATOM}}}title", f"{title} ({event.source_count} sources)")
        _sub(entry, f"{{{ATOM}}}id", f"urn:newswatch:event:{event.id}")
        _sub(entry, f"{{{ATOM}}}link", rel="alternate", href=f"{base}/events/{event.id}")
        _sub(entry, f"{{{ATOM}}}published", _iso(event.first_seen))
        _sub(entry, f"{{{ATOM}}}updated", _iso(times[event.id]))
        author = _sub(entry, f"{{{ATOM}}}author")
        _sub(author, f"{{{ATOM}}}name", "newswatch")
        summary = _summary(event, articles.get(event.id, []))
        _sub(entry, f"{{{ATOM}}}content", summary, type="html")
    body = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return Response(body, media_type=MEDIA_TYPE)


@router.get("/events.atom")
def events_feed(
    request: Request,
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=200)] = None,
    min_sources: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    since: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The most recently active events, like /api/events (default: the last 7 days)."""
    start = parse_since(since) if since else datetime.now(UTC) - DEFAULT_SINCE
    page = events.list_events(
        session, limit=ENTRIES, since=start, q=clean_text(q), min_sources=min_sources
    )
    articles = events.event_articles(session, [e.id for e in page.items])
    title = "newswatch events"
    if q:
        title += f" matching {q!r}"
    if min_sources:
        title += f" with {min_sources}+ sources"
    feed_id = f"urn:newswatch:events:{request.url.query}"
    return render_feed(request, title, feed_id, page.items, articles)


@router.get("/rules/{rule}.atom")
def rule_feed(
    request: Request,
    session: SessionDep,
    rule: Annotated[str, Path(max_length=100)],
) -> Response:
    """The events alert rule `rule` notified about, newest notification first."""
    config = request.app.state.config
    names = {r.name for r in config.rules} if config is not None else set()
    if rule not in names:
        raise ApiError(404, f"no alert rule named {rule!r}", "rule")
    notified = notified_events(session, rule, ENTRIES)
    found = [events.get_event(session, event_id) for event_id in notified]
    # A merged-away event answers with its survivor: list each survivor once.
    items: dict[int, EventOut] = {}
    updated: dict[int, datetime] = {}
    for requested, detail in zip(notified, found, strict=True):
        if detail is not None and detail.id not in items:
            items[detail.id] = EventOut.model_validate(detail.model_dump())
            updated[detail.id] = notified[requested]
    articles = events.event_articles(session, list(items))
    return render_feed(
        request,
        f"newswatch alerts: {rule}",
        f"urn:newswatch:rule:{rule}",
        list(items.values()),
        articles,
        updated,
    )
