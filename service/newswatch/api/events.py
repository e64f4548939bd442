"""Events for the API, the pages and the CLI: the store's rows made readable.

Titles: a generic stored title ("(untitled)", "Post", "Home", …) is replaced by the event's
representative title (decision 0196). Evidence: the grouping's stored explanation put in
words. Times: one article time, `article_time` of the grouping stage (publication, unless
missing or in the future, else first seen), for timelines and texts alike.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from newswatch.api.params import EventCursor
from newswatch.api.schemas import (
    EventArticle,
    EventDetail,
    EventOut,
    EventPage,
    HistoryEntry,
    Mark,
    Triage,
)
from newswatch.store import event_lookup, event_triage, event_views
from newswatch.store.columns import as_utc, utcnow
from newswatch.store.event_triage import EventTriage
from newswatch.store.event_views import EVENTS, After, EventFilter, Sort, events_available
from newswatch.store.models import Article
from newswatch.store.search import SearchQuery
from newswatch.store.timing import article_time

__all__ = [
    "EVENTS",
    "event_articles",
    "events_available",
    "get_event",
    "list_events",
    "near_events",
]

LEAD_CHARS = 300
# Titles that name a kind of page, not a happening (compared lower-case, without punctuation).
GENERIC_TITLES = frozenset(
    {
        "",
        "untitled",
        "no title",
        "untitled document",
        "post",
        "home",
        "home page",
        "homepage",
        "index",
        "news",
        "article",
        "page",
        "blog",
        "welcome",
    }
)
_NOT_WORD = re.compile(r"[\W_]+")


def is_generic_title(title: str | None) -> bool:
    """Whether a title says nothing about the news: missing, or a page-type word."""
    if title is None:
        return True
    return _NOT_WORD.sub(" ", title.lower()).strip() in GENERIC_TITLES


def representative_title(
    stored: str | None, titles: Sequence[str | None], entities: Any = None
) -> str | None:
    """The stored title unless generic; else the real title most reports carry (the
    earliest of equals: `titles` are in report order), else the event's top entities."""
    if not is_generic_title(stored):
        return stored
    real = [t.strip() for t in titles if t is not None and not is_generic_title(t)]
    if real:
        counts = Counter(real)
        return max(real, key=lambda t: counts[t])  # max keeps the first of equals
    if isinstance(entities, list) and entities:
        return ", ".join(str(e) for e in entities[:3])
    return stored


def lead_of(text: str | None, summary: str | None, limit: int = LEAD_CHARS) -> str | None:
    """The first ~`limit` characters of the text (else the summary), cut at a word."""
    body = " ".join((text or summary or "").split())
    if len(body) <= limit:
        return body or None
    cut = body[:limit].rsplit(" ", 1)[0]
    return cut + "…"


def _mark(at: datetime | None, by: str | None) -> Mark | None:
    return Mark(at=as_utc(at), by=by) if at is not None else None


def _marks(row: Any) -> dict[str, Mark | None]:
    return {
        "acknowledged": _mark(row.acknowledged_at, row.acknowledged_by),
        "starred": _mark(row.starred_at, row.starred_by),
        "muted": _mark(row.muted_at, row.muted_by),
    }


def _event_out(row: Any, title: str | None, growth: int | None = None) -> EventOut:
    return EventOut(
        id=row.id,
        title=title,
        stored_title=row.title,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        article_count=row.article_count,
        source_count=row.source_count,
        growth=growth,
        top_entities=row.top_entities,
        **_marks(row),
    )


def list_events(
    session: Session,
    *,
    limit: int,
    cursor: EventCursor | None = None,
    since: datetime | None = None,
    q: str | SearchQuery | None = None,
    min_sources: int | None = None,
    language: str | None = None,
    source_id: int | None = None,
    rule: str | None = None,
    hide_acknowledged: bool = False,
    starred: bool = False,
    sort: Sort = "latest",
) -> EventPage:
    """Open (not merged-away) events in `sort` order: latest activity, size (distinct
    sources) or growth (sources added in the last hour); ties by id, newest first."""
    if not events_available(session):
        return EventPage(items=[], limit=limit, next_cursor=None, sort=sort)
    filters = EventFilter(
        since, q, min_sources, language, source_id, rule, hide_acknowledged, starred
    )
    as_of = cursor.as_of if cursor is not None else utcnow()
    after = After(cursor.key, cursor.id) if cursor is not None else None
    rows = event_views.list_events(
        session, filters, sort=sort, limit=limit + 1, as_of=as_of, after=after
    )
    shown = rows[:limit]
    generic = [r.id for r in shown if is_generic_title(r.title)]
    titles = event_views.article_times(session, generic)
    if sort == "growth":
        growth = {r.id: int(r.growth) for r in shown}
    else:
        growth = event_views.growth_of(session, [r.id for r in shown], as_of)
    items = [
        _event_out(
            r,
            representative_title(r.title, [a.title for a in titles.get(r.id, [])], r.top_entities),
            growth[r.id],
        )
        for r in shown
    ]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        key = as_utc(last.sort_key) if sort == "latest" else int(last.sort_key)
        next_cursor = EventCursor(sort, key, last.id, as_of).encode()
    return EventPage(items=items, limit=limit, next_cursor=next_cursor, sort=sort)


def resolve_event_id(session: Session, event_id: int) -> int | None:
    return event_views.resolve_event_id(session, event_id)


def event_articles(
    session: Session, event_ids: list[int], *, since: datetime | None = None
) -> dict[int, list[tuple[Article, str | None]]]:
    """Articles of each event (first seen first) with the source that first had each."""
    return event_views.event_articles(session, event_ids, since=since)


def report_time(article: Article) -> datetime:
    return article_time(
        as_utc(article.published) if article.published else None, article.first_seen
    )


def _shares(entities: list[str], article: Article) -> bool:
    haystack = f"{article.title or ''} {article.text or article.summary or ''}".lower()
    return any(e.lower() in haystack for e in entities)


def evidence(explanation: Any, earlier: Sequence[Article], titles: dict[int, str | None]) -> str:
    """The grouping's explanation in words, e.g. "joined: shares Mt. Gox, bankruptcy with 4
    earlier reports; score 0.51". `earlier` are the event's reports before this one."""
    if not isinstance(explanation, dict):
        return "how it joined was not recorded"
    stage = explanation.get("stage")
    score = explanation.get("score")
    scored = f"score {float(score):.2f}" if isinstance(score, int | float) else "no score"
    shared = [str(e) for e in explanation.get("shared_entities") or []]
    if stage == "new":
        text = "opened the event"
    elif stage == "duplicate":
        original = explanation.get("duplicate_of")
        text = f"copy of report #{original} (near-identical text; {scored})"
    elif shared:
        with_them = sum(1 for a in earlier if _shares(shared, a))
        reports = f" with {with_them} earlier report{'' if with_them == 1 else 's'}"
        text = f"joined: shares {', '.join(shared)}{reports if with_them else ''}; {scored}"
    else:
        text = f"joined: similar wording to the event's reports; {scored}"
    merged = explanation.get("merged") or []
    if merged:
        named = ", ".join(_event_name(int(e), titles) for e in merged)
        text += f"; it brought in event{'s' if len(merged) > 1 else ''} {named}"
    split = explanation.get("split")
    if isinstance(split, dict):
        moved = split.get("moved")
        text += (
            f"; after it the event proved to hold two: {moved} report"
            f"{'' if moved == 1 else 's'} moved to event {split.get('new_event')}"
        )
    return text


def _event_name(event_id: int, titles: dict[int, str | None]) -> str:
    title = titles.get(event_id)
    return f"#{event_id} ({title})" if title else f"#{event_id}"


def _articles(session: Session, pairs: list[tuple[Article, str | None]]) -> list[EventArticle]:
    ids = [a.id for a, _ in pairs if a.id is not None]
    carriers = event_views.sources_by_article(session, ids)
    mentioned = {
        int(e)
        for a, _ in pairs
        if isinstance(a.group_explain, dict)
        for e in (a.group_explain.get("merged") or [])
    }
    titles = event_views.event_titles(session, sorted(mentioned))
    out = []
    for index, (article, name) in enumerate(pairs):
        data = article.model_dump(exclude={"text", "fingerprint", "group_explain"})
        out.append(
            EventArticle(
                **data,
                source_name=name,
                time=report_time(article),
                lead=lead_of(article.text, article.summary),
                sources=carriers.get(article.id or 0, []),
                explanation=article.group_explain,
                evidence=evidence(article.group_explain, [a for a, _ in pairs[:index]], titles),
            )
        )
    return out


def _history(session: Session, event_id: int, split_from: int | None) -> list[HistoryEntry]:
    entries = [
        HistoryEntry(kind="merged_in", event_id=r.id, title=r.title, at=r.at)
        for r in event_views.merged_into_event(session, event_id)
    ]
    entries += [
        HistoryEntry(kind="split_off", event_id=r.id, title=r.title, at=r.at)
        for r in event_views.split_off_event(session, event_id)
    ]
    if split_from is not None:
        title = event_views.event_titles(session, [split_from]).get(split_from)
        entries.append(HistoryEntry(kind="split_from", event_id=split_from, title=title))
    entries.sort(key=lambda h: (h.at is None, h.at or datetime.min, h.event_id))
    return entries


def get_event(session: Session, event_id: int) -> EventDetail | None:
    """One event with its articles, their sources, leads and why each joined; a merged-away
    id resolves to the event that absorbed it."""
    final = event_views.resolve_event_id(session, event_id)
    if final is None:
        return None
    row = event_views.event_row(session, final)
    if row is None:
        return None
    pairs = event_views.event_articles(session, [final]).get(final, [])
    articles = _articles(session, pairs)
    title = representative_title(row.title, [a.title for a, _ in pairs], row.top_entities)
    history = _history(session, final, row.split_from)
    return EventDetail(
        **_event_out(row, title).model_dump(),
        merged_from=[h.event_id for h in history if h.kind == "merged_in"],
        split_from=row.split_from,
        split_off=[h.event_id for h in history if h.kind == "split_off"],
        history=history,
        sources=sorted({s for a in articles for s in a.sources}),
        articles=articles,
    )


def triage_out(row: EventTriage) -> Triage:
    return Triage(
        event_id=row.event_id,
        acknowledged=_mark(row.acknowledged_at, row.acknowledged_by),
        starred=_mark(row.starred_at, row.starred_by),
        muted=_mark(row.muted_at, row.muted_by),
    )


def set_mark(
    session: Session, event_id: int, mark: event_triage.Mark, on: bool, by: str | None
) -> Triage | None:
    """Set or clear a triage mark on the event `event_id` lives in (a merged-away id marks
    its survivor); None when there is no such event."""
    final = event_views.resolve_event_id(session, event_id)
    if final is None:
        return None
    return triage_out(event_triage.set_mark(session, final, mark, on, by=by))


# Which way a near miss went: this event's articles were kept out of the other event
# (it rejected them), or the other event's articles were kept out of this one.
KEPT_OUT_OF_IT = "kept_out_of_it"
KEPT_OUT_OF_THIS = "kept_out_of_this"


@dataclass(frozen=True)
class NearEvent:
    """An event close to the one asked about that grouping kept apart from it: the closest
    score, why, and which way."""

    event_id: int
    title: str | None
    score: float
    reason: str
    articles: int  # articles kept out (of the direction's side)
    direction: str  # KEPT_OUT_OF_IT or KEPT_OUT_OF_THIS


def near_events(
    session: Session, event_id: int, *, window: timedelta, limit: int = 10
) -> list[NearEvent] | None:
    """The events grouping kept apart from `event_id`, as recorded in the explanations, in
    both directions: the candidates that rejected its articles (a veto, or a score below
    the threshold) and the events whose articles it rejected; at most `limit` each, closest
    first. Merged-away events are read as their survivors. None: no such event. Reads the
    `near` entries only, never whole articles, and of the second direction only those of
    articles within `window` (the grouping window) of the event; candidates are resolved in
    one query."""
    final = event_views.resolve_event_id(session, event_id)
    if final is None:
        return None
    ours = [
        item
        for _, near in event_lookup.near_misses_of_event(session, final)
        for item in _near_of({"near": near})
    ]
    now = event_lookup.resolve_events(session, {item["event"] for item in ours})
    rejected_by = _closest(((now.get(item["event"]), item) for item in ours), final, limit)
    aliases = event_lookup.merged_aliases(session, final)
    named = set(aliases)
    theirs = [
        (article_event, item)
        for _, article_event, near in event_lookup.near_misses_naming(
            session, aliases, final, window
        )
        for item in _near_of({"near": near})
        if item["event"] in named
    ]
    rejected = _closest(theirs, final, limit)
    titles = event_views.event_titles(session, [e for e, *_ in rejected_by + rejected])
    return [
        NearEvent(e, titles.get(e), score, reason, count, direction)
        for direction, found in ((KEPT_OUT_OF_IT, rejected_by), (KEPT_OUT_OF_THIS, rejected))
        for e, score, reason, count in found
    ]


def _closest(
    pairs: Iterable[tuple[int | None, dict[str, Any]]], final: int, limit: int
) -> list[tuple[int, float, str, int]]:
    """Per other event (pairs of event and near-miss entry; None or `final` left out): its
    best score with that entry's reason and how many entries name it, closest first."""
    best: dict[int, tuple[float, str]] = {}
    counts: Counter[int] = Counter()
    for event, item in pairs:
        if event is None or event == final:
            continue
        counts[event] += 1
        if event not in best or item["score"] > best[event][0]:
            best[event] = (item["score"], item["reason"])
    closest = sorted(best, key=lambda e: (-best[e][0], e))[:limit]
    return [(e, best[e][0], best[e][1], counts[e]) for e in closest]


def _near_of(explanation: Any) -> list[dict[str, Any]]:
    """The well-formed near-miss entries of a stored explanation ({event, score, reason})."""
    if not isinstance(explanation, dict) or not isinstance(explanation.get("near"), list):
        return []
    return [
        {"event": int(n["event"]), "score": float(n["score"]), "reason": str(n["reason"])}
        for n in explanation["near"]
        if isinstance(n, dict)
        and isinstance(n.get("event"), int)
        and isinstance(n.get("score"), int | float)
        and isinstance(n.get("reason"), str)
    ]
