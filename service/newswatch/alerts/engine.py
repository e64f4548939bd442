"""The alerts stage: match articles against every rule, and notify once per (rule, event)
when an event is corroborated by enough distinct sources.

Runs inside the ingest transaction (Pipeline.ingest_jobs): the matches, the state and the
outbox rows commit together with the articles and events that caused them, or not at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from newswatch.alerts.cap import RuleCap
from newswatch.alerts.config import ChannelConfig, RuleConfig
from newswatch.alerts.matcher import CompiledRule, RuleSet
from newswatch.alerts.models import AlertState, RuleMatch
from newswatch.alerts.policy import group_wait, schedule
from newswatch.alerts.query import Document, matched_terms
from newswatch.alerts.silences import list_silences
from newswatch.grouping.changes import EventChange
from newswatch.metrics import RULE_MATCHES
from newswatch.store.columns import as_utc, utcnow
from newswatch.store.merged_events import (
    drop_notifications,
    matches_of,
    merge_alert_states,
    notifications_of,
    rewrite_notification,
)
from newswatch.store.models import Article, Event, Sighting, Source, table_of
from newswatch.store.outbox import enqueue, idempotency_key, open_wait_group

if TYPE_CHECKING:
    from newswatch.config import Settings

MATCHES = table_of(RuleMatch)
M = MATCHES.c
A = table_of(Article).c
PAYLOAD_ARTICLES = 20


@dataclass
class ArticleView:
    id: int
    event_id: int
    title: str | None
    text: str | None
    language: str | None
    at: datetime
    sources: list[tuple[int, str]]  # (source id, name) of every carrier
    url: str | None = None

    def document(self) -> Document:
        names = " ".join(name for _, name in self.sources)
        return Document.of(title=self.title, text=self.text, source=names, lang=self.language)


@dataclass
class Firing:
    """Why a rule fires on an event (or would, in a dry run)."""

    rule: str
    event_id: int
    sources: int  # distinct sources within the window
    terms: list[str]


def corroboration(points: Iterable[tuple[int, datetime]], window: timedelta | None) -> int:
    """Most distinct sources whose matches fall within one span of `window` (all when None)."""
    items = sorted(points, key=lambda p: p[1])
    if window is None:
        return len({source for source, _ in items})
    best = 0
    counts: dict[int, int] = defaultdict(int)
    start = 0
    for source, at in items:
        counts[source] += 1
        while at - items[start][1] > window:
            old = items[start][0]
            counts[old] -= 1
            if counts[old] == 0:
                del counts[old]
            start += 1
        best = max(best, len(counts))
    return best


class AlertEngine:
    """Decides, inside the ingest transaction, which (rule, event) pairs are notified and
    when; writes matches, state and outbox rows. `settings` is accepted for the shared
    interface (its public URL makes the payloads' event links); `clock` is for tests."""

    def __init__(
        self,
        rules: list[RuleConfig],
        channels: list[ChannelConfig],
        settings: Settings | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.settings = settings
        self.public_url = settings.public_url if settings is not None else None
        self.rules = {r.name: r for r in rules if r.enabled}
        self.channels = {c.name: c for c in channels}
        self.ruleset = RuleSet(CompiledRule(r.name, r.compiled()) for r in self.rules.values())
        self.clock = clock
        self.cap = RuleCap.from_settings(settings)
        # Called after a transaction that queued notifications commits (wakes the worker).
        self.enqueued = False
        self._silences: set[str | None] | None = None
        self._round: dict[str, Any] = {"states": {}, "events": [], "views": {}}

    # --- the pipeline's entry point -------------------------------------------------
    def on_changes(self, session: Session, changes: list[EventChange]) -> list[Firing]:
        if not self.rules or not changes:
            return []
        waiting: set[tuple[str, int]] = set()  # (rule, event) whose queued news is re-told
        for change in changes:  # merges and splits in the order they happened
            for gone in change.merged_event_ids:
                _move_event(session, gone, change.event_id)
                waiting |= self._fold_outbox(session, gone, change.event_id)
            if change.split is not None:
                _move_articles(session, change.split.moved, change.split.new_event_id)
        new_ids = [c.article_id for c in changes if not c.sighting]
        rows = [row for view in load_articles(session, new_ids) for row in self._match_rows(view)]
        _insert_matches(session, rows)
        touched = {(r["rule"], r["event_id"]) for r in rows}
        sighted = [c.article_id for c in changes if c.sighting]
        touched |= self._copy_matches(session, sighted)
        # Events that grew by a merge are judged again with their new members; both parts
        # of a split too (the part split off is a new event to its rules).
        for change in changes:
            if change.merged_event_ids:
                touched |= {(r, change.event_id) for r in self._rules_on(session, change.event_id)}
            if change.split is not None:
                for event_id in (change.split.event_id, change.split.new_event_id):
                    touched |= {(r, event_id) for r in self._rules_on(session, event_id)}
        self._retell(session, waiting)
        return self._decide(session, touched)

    # --- merges: fragments of one story -----------------------------------------------
    def _fold_outbox(self, session: Session, gone: int, keep: int) -> set[tuple[str, int]]:
        """Event `gone` was absorbed into `keep`: their queued notifications (never
        attempted: waiting out a group_wait, a digest or quiet hours, or not yet picked up)
        become one per (rule, channel) about the survivor. If a notification of either went
        out already, the story was announced: no second "new" alert waits, only the
        survivor's updates. Returns the (rule, keep) pairs whose waiting rows need the
        survivor's news (see _retell)."""
        groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for row in notifications_of(session, (gone, keep)):
            if row.rule in self.rules:
                groups[(row.rule, row.channel)].append(row)
        retell: set[tuple[str, int]] = set()
        for (rule, _channel), rows in groups.items():
            waiting = [r for r in rows if r.status == "pending" and r.attempts == 0]
            announced = len(waiting) < len(rows)
            if announced:  # only the survivor's updates wait
                kept = [r for r in waiting if r.event_id == keep and r.revision > 1]
            elif waiting:  # one notification: the first due (the survivor's own on a tie)
                kept = [min(waiting, key=lambda r: (r.not_before, r.event_id != keep, r.revision))]
            else:
                continue
            drop_notifications(session, [r.id for r in waiting if r not in kept])
            if not announced:  # (after the drop: the survivor's key may be free only now)
                self._adopt(session, rule, keep, kept[0])
            if kept:
                retell.add((rule, keep))
        return retell

    def _adopt(self, session: Session, rule: str, keep: int, row: Any) -> None:
        """The survivor's one waiting notification is `row` (maybe the absorbed event's,
        moved over): the survivor's state counts it as its latest."""
        if row.event_id != keep:
            key = idempotency_key(rule, keep, row.revision)
            rewrite_notification(session, row.id, keep, key)  # _retell rewrites the news
        state = session.get(AlertState, (rule, keep))
        if state is not None:
            state.revision, state.status = row.revision, "notified"

    def _retell(self, session: Session, pairs: set[tuple[str, int]]) -> None:
        """The waiting notifications of merged events say what the survivor holds now:
        its title, sources and articles (so the one notification covers every fragment)."""
        for rule_name, event_id in sorted(pairs):
            rule = self.rules[rule_name]
            judged = _judge(rule, event_id, matches_of(session, rule_name, event_id))
            if judged is None:
                continue
            firing, matched = judged
            rows = notifications_of(session, (event_id,))
            for row in rows:
                if row.rule != rule_name or row.status != "pending" or row.attempts:
                    continue
                payload = event_payload(
                    session, rule, firing, row.revision, matched, public_url=self.public_url
                )
                key = idempotency_key(rule_name, event_id, row.revision)
                rewrite_notification(session, row.id, event_id, key, payload)
            state = session.get(AlertState, (rule_name, event_id))
            if state is not None:
                state.sources_notified = firing.sources

    def _match_rows(self, view: ArticleView) -> list[dict]:
        """A match row per rule the article matches and per source carrying it that counts."""
        doc = view.document()
        rows = []
        for compiled in self.ruleset.match(doc):
            rule = self.rules[compiled.name]
            terms = matched_terms(compiled.query, doc)
            for source_id, name in view.sources:
                if _source_allowed(rule, name):
                    rows.append(_match_row(rule.name, view, source_id, terms))
        return rows

    def _copy_matches(self, session: Session, article_ids: list[int]) -> set[tuple[str, int]]:
        """A known article seen at one more source counts for that source too."""
        if not article_ids:
            return set()
        known = session.execute(
            select(M.rule, M.article_id, M.terms).where(M.article_id.in_(article_ids))
        ).all()
        if not known:
            return set()
        views = {v.id: v for v in load_articles(session, sorted({r.article_id for r in known}))}
        rows = []
        for rule_name, article_id, terms in known:
            rule, view = self.rules.get(rule_name), views.get(article_id)
            if rule is None or view is None:
                continue
            for source_id, name in view.sources:
                if _source_allowed(rule, name):
                    rows.append(_match_row(rule_name, view, source_id, list(terms)))
        _insert_matches(session, rows)
        return {(r["rule"], r["event_id"]) for r in rows}

    def _rules_on(self, session: Session, event_id: int) -> set[str]:
        query = select(M.rule).where(M.event_id == event_id).distinct()
        return {r for r in session.execute(query).scalars() if r in self.rules}

    # --- deciding -------------------------------------------------------------------
    def _decide(self, session: Session, touched: set[tuple[str, int]]) -> list[Firing]:
        """Judge every (rule, event) that got new matches, with a few queries in all."""
        if not touched:
            return []
        states = {
            (s.rule, s.event_id): s
            for s in session.execute(
                select(AlertState).where(
                    col(AlertState.event_id).in_({e for _, e in touched}),
                    col(AlertState.rule).in_({r for r, _ in touched}),
                )
            ).scalars()
        }
        # Notified already, without updates: nothing more can happen for these.
        open_pairs = [
            pair
            for pair in sorted(touched)
            if (state := states.get(pair)) is None
            or state.revision == 0
            or self.rules[pair[0]].updates
        ]
        if not open_pairs:
            return []
        self._silences = None  # loaded when first needed, once per round
        self.cap.new_round()
        # The events in play, loaded at once (session.get then finds them without a query).
        events = session.execute(
            select(Event).where(col(Event.id).in_({e for _, e in open_pairs}))
        ).scalars()
        self._round = {"states": states, "events": list(events), "views": {}}
        found: dict[tuple[str, int], list[Any]] = defaultdict(list)
        for row in session.execute(
            select(M.rule, M.event_id, M.article_id, M.source_id, M.at, M.terms).where(
                M.event_id.in_({e for _, e in open_pairs}), M.rule.in_({r for r, _ in open_pairs})
            )
        ):
            found[(row.rule, row.event_id)].append(row)
        due = []
        for rule_name, event_id in open_pairs:
            rule = self.rules[rule_name]
            judged = _judge(rule, event_id, found[(rule_name, event_id)])
            state = states.get((rule_name, event_id))
            if judged is not None and (
                state is None or _due_update(rule, state, judged[0].sources)
            ):
                due.append((rule, *judged))
        # The articles every payload of the round shows, in one query.
        views: dict[int, ArticleView] = self._round["views"]
        wanted = {i for _r, _f, matched in due for i in matched[-PAYLOAD_ARTICLES:]}
        views.update((v.id, v) for v in load_articles(session, sorted(wanted)))
        return [f for rule, f, matched in due if self._notify(session, rule, f, matched)]

    def _silenced(self, session: Session, rule: str, now: datetime) -> bool:
        if self._silences is None:
            self._silences = {s.rule for s in list_silences(session, now=now)}
        return None in self._silences or rule in self._silences

    def _notify(
        self, session: Session, rule: RuleConfig, firing: Firing, matched: list[int]
    ) -> bool:
        now = self.clock()
        state = self._round["states"].get((rule.name, firing.event_id))
        if state is not None and not _due_update(rule, state, firing.sources):
            return False
        last_sent = state.last_at if state is not None and state.revision else None
        if state is None:
            state = AlertState(rule=rule.name, event_id=firing.event_id, first_at=now)
            session.add(state)
            self._round["states"][(rule.name, firing.event_id)] = state
        state.sources_notified = firing.sources
        state.last_at = now
        if self._silenced(session, rule.name, now):
            state.status = "silenced"  # recorded, so the silence is visible; nothing queued
            return False
        if self.cap.full(session, rule.name, now):
            state.status = "capped"  # counted in the window's summary (alerts/cap.py)
            if self.cap.overflow(
                session, rule, self.channels, firing.event_id, firing.sources, now
            ):
                self.enqueued = True
            return False
        self.cap.counted(rule.name, now)
        state.status = "notified"
        state.revision += 1
        payload = event_payload(
            session,
            rule,
            firing,
            state.revision,
            matched,
            self._round["views"],
            public_url=self.public_url,
        )
        for channel_name in rule.channels:
            channel = self.channels[channel_name]
            group = None
            if group_wait(rule, channel):
                group = open_wait_group(session, rule.name, channel_name, now)
            not_before, batch_key = schedule(rule, channel, now, last_sent, group)
            if enqueue(
                session,
                rule=rule.name,
                channel=channel_name,
                event_id=firing.event_id,
                revision=state.revision,
                payload=payload,
                not_before=not_before,
                batch_key=batch_key,
            ):
                self.enqueued = True
        RULE_MATCHES.labels(rule.name).inc()
        return True

    # --- dry run --------------------------------------------------------------------
    def dry_run(self, session: Session, since: datetime | None) -> list[Firing]:
        """The events that would fire on the stored history, without writing anything.
        `since` applies to the news' own time (publication, else first seen), like windows."""
        query = select(col(Article.id)).where(col(Article.event_id).is_not(None))
        if since is not None:
            query = query.where(
                or_(
                    A.published >= since,
                    and_(A.published.is_(None), A.first_seen >= since),
                )
            )
        ids = list(session.execute(query.order_by(col(Article.id))).scalars())
        points: dict[tuple[str, int], list[tuple[int, datetime]]] = defaultdict(list)
        terms: dict[tuple[str, int], set[str]] = defaultdict(set)
        for start in range(0, len(ids), 500):
            for view in load_articles(session, ids[start : start + 500]):
                doc = view.document()
                for compiled in self.ruleset.match(doc):
                    rule = self.rules[compiled.name]
                    key = (rule.name, view.event_id)
                    for source_id, name in view.sources:
                        if _source_allowed(rule, name):
                            points[key].append((source_id, view.at))
                            terms[key].update(matched_terms(compiled.query, doc))
        out = []
        for (rule_name, event_id), found in sorted(points.items()):
            rule = self.rules[rule_name]
            count = corroboration(found, rule.window)
            if count >= rule.min_sources:
                out.append(Firing(rule_name, event_id, count, sorted(terms[(rule_name, event_id)])))
        return out


def _judge(rule: RuleConfig, event_id: int, rows: Sequence[Any]) -> tuple[Firing, list[int]] | None:
    """Whether the matches of a (rule, event) meet the rule: the firing and the articles."""
    count = corroboration(((r.source_id, as_utc(r.at)) for r in rows), rule.window)
    if count < rule.min_sources:
        return None
    terms = sorted({t for r in rows for t in r.terms})
    return Firing(rule.name, event_id, count, terms), sorted({r.article_id for r in rows})


def _due_update(rule: RuleConfig, state: AlertState, sources: int) -> bool:
    """Whether a (rule, event) already decided on needs a notification now: never sent
    (it was silenced), or, with updates on, the event reached the next threshold: 2x, 4x,
    8x ... min_sources distinct sources."""
    if state.revision == 0:
        return True
    if not rule.updates:
        return False
    threshold = rule.min_sources
    while threshold <= state.sources_notified:
        threshold *= 2
    return sources >= threshold


def _source_allowed(rule: RuleConfig, name: str) -> bool:
    if rule.sources and name not in rule.sources:
        return False
    return name not in rule.exclude_sources


def _match_row(rule: str, view: ArticleView, source_id: int, terms: list[str]) -> dict:
    return {
        "rule": rule,
        "event_id": view.event_id,
        "article_id": view.id,
        "source_id": source_id,
        "at": view.at,
        "terms": terms,
    }


def _insert_matches(session: Session, rows: list[dict]) -> None:
    if not rows:
        return
    make = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = make(MATCHES).on_conflict_do_nothing(
        index_elements=[M.rule, M.article_id, M.source_id]
    )
    session.execute(statement, rows)


def _move_event(session: Session, gone: int, keep: int) -> None:
    """A merged event's matches and notification history belong to the survivor."""
    session.execute(update(MATCHES).where(M.event_id == gone).values(event_id=keep))
    merge_alert_states(session, gone, keep)


def _move_articles(session: Session, article_ids: tuple[int, ...], event_id: int) -> None:
    """Articles split off into `event_id` take their matches along; the notification
    history stays with the event they left."""
    for start in range(0, len(article_ids), 500):
        chunk = article_ids[start : start + 500]
        session.execute(update(MATCHES).where(M.article_id.in_(chunk)).values(event_id=event_id))


def load_articles(session: Session, ids: list[int]) -> list[ArticleView]:
    """Articles with every source that carried them, in id order."""
    if not ids:
        return []
    rows = session.execute(
        select(
            A.id,
            A.event_id,
            A.title,
            A.text,
            A.summary,
            A.language,
            A.published,
            A.first_seen,
            A.url,
            A.canonical_url,
        )
        .where(A.id.in_(ids), A.event_id.is_not(None))
        .order_by(A.id)
    ).all()
    carriers: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for article_id, source_id, name in session.execute(
        select(col(Sighting.article_id), col(Sighting.source_id), col(Source.name))
        .join(Source, col(Source.id) == Sighting.source_id)
        .where(col(Sighting.article_id).in_(ids))
        .order_by(col(Sighting.id))
    ):
        carriers[article_id].append((source_id, name))
    out = []
    for r in rows:
        published = as_utc(r.published) if r.published else None
        first_seen = as_utc(r.first_seen)
        at = published if published is not None and published <= first_seen else first_seen
        out.append(
            ArticleView(
                r.id,
                r.event_id,
                r.title,
                r.text or r.summary,
                r.language,
                at,
                carriers.get(r.id, []),
                r.url or r.canonical_url,
            )
        )
    return out


def event_payload(
    session: Session,
    rule: RuleConfig,
    firing: Firing,
    revision: int,
    matched_ids: list[int] | None = None,
    cache: dict[int, ArticleView] | None = None,
    *,
    public_url: str | None = None,
) -> dict[str, Any]:
    """What a notification says about an event: documented in docs/webhooks.md.
    `matched_ids`: the event's articles that matched the rule, when the caller knows them;
    `cache`: articles loaded already, by id (missing ones are loaded and added);
    `public_url`: the service's base URL (NEWSWATCH_PUBLIC_URL), for the event page's link."""
    event = session.get(Event, firing.event_id)
    if matched_ids is None:
        query = select(M.article_id).where(M.rule == rule.name, M.event_id == firing.event_id)
        matched_ids = sorted(set(session.execute(query).scalars()))
    wanted = matched_ids[-PAYLOAD_ARTICLES:]
    cache = {} if cache is None else cache
    cache.update((v.id, v) for v in load_articles(session, [i for i in wanted if i not in cache]))
    views = [cache[i] for i in wanted if i in cache]
    # Every source that carried a matching article, also those of articles not listed.
    sources = sorted(
        session.execute(
            select(col(Source.name))
            .join(MATCHES, M.source_id == Source.id)
            .where(M.rule == rule.name, M.event_id == firing.event_id)
            .distinct()
        ).scalars()
    )
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
        "sources": sources,
        "articles": [
            {
                "id": v.id,
                "title": v.title,
                "url": v.url,
                "sources": [name for _, name in v.sources],
                "published": v.at.isoformat(),
            }
            for v in views
        ],
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
