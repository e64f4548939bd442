"""The grouping stage over the store: assigns new articles to events inside the ingest
transaction and keeps the events table in step.

The clustering itself (cluster.py) is in memory; at start it is rebuilt from the articles of
the last time window, so a restart continues the same events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlmodel import Session

from newswatch.grouping.changes import EventChange, EventSplit
from newswatch.grouping.cluster import Clusterer, Decision, Split
from newswatch.grouping.settings import GroupingSettings
from newswatch.metrics import EVENTS_MERGED, EVENTS_OPENED, EVENTS_SPLIT
from newswatch.store.articles import StoredArticle
from newswatch.store.columns import as_utc, utcnow
from newswatch.store.models import Article, Event, Sighting, table_of

ARTICLES = table_of(Article)
EVENTS = table_of(Event)
SIGHTINGS = table_of(Sighting)
A = ARTICLES.c
E = EVENTS.c
# Events whose statistics are refreshed in one statement.
STATS_CHUNK = 500
# Rows read at a time when the in-memory state is rebuilt at start.
LOAD_CHUNK = 2000


def article_time(published: datetime | None, first_seen: datetime) -> datetime:
    """The time an article counts at: publication, unless missing or in the future."""
    if published is None or published > first_seen + timedelta(hours=1):
        return first_seen
    return published


def body_of(text: str | None, summary: str | None) -> str:
    return text or summary or ""


# A new article, where it went, and the time it counts at.
Placement = tuple[StoredArticle, Decision, datetime]


@dataclass
class EventStats:
    """What the events table counts of an event, kept in memory for live events so a batch
    updates it by its own articles instead of recounting every member of a big event."""

    articles: int
    first: datetime
    last: datetime
    sources: set[int] = field(default_factory=set)


class EventGrouper:
    """Assigns articles to events; one instance per process (the state is in memory)."""

    def __init__(self, settings: GroupingSettings | None = None):
        self.settings = settings or GroupingSettings()
        self.clusterer = Clusterer(self.settings)
        self.stats: dict[int, EventStats] = {}

    # --- start and rollback -------------------------------------------------------------
    def load(self, session: Session) -> int:
        """Rebuild the in-memory state from the articles of the last window; returns how many
        articles were read."""
        self.clusterer = Clusterer(self.settings)
        self.stats = {}
        latest = session.execute(select(func.max(A.first_seen))).scalar()
        if latest is None:
            return 0
        since = latest - timedelta(hours=self.settings.window_hours)
        when = func.coalesce(A.published, A.first_seen)
        query = (
            select(
                A.id,
                A.event_id,
                A.title,
                A.text,
                A.summary,
                A.published,
                A.first_seen,
                A.group_stage,
                A.duplicate_of,
            )
            .where(A.event_id.is_not(None), or_(A.first_seen >= since, when >= since))
            .order_by(A.id)
            .execution_options(yield_per=LOAD_CHUNK)
        )
        restore = self.clusterer.restore
        count = 0
        for row in session.execute(query):
            # Signatures are recomputed from the text rather than read from `fingerprint`:
            # always comparable with new ones, whichever version stored them.
            restore(
                row.id,
                row.event_id,
                row.title,
                body_of(row.text, row.summary),
                article_time(row.published, row.first_seen).timestamp(),
                opened=row.group_stage == "new",
                duplicate_of=row.duplicate_of,
            )
            count += 1
        # Events split apart stay apart after a restart.
        live = self.clusterer.events
        pairs = select(E.id, E.split_from).where(E.split_from.is_not(None), E.last_seen >= since)
        for event_id, split_from in session.execute(pairs):
            if event_id in live or split_from in live:
                self.clusterer.keep_apart(event_id, split_from)
        return count

    # --- ingest -------------------------------------------------------------------------
    def assign_batch(self, session: Session, stored: list[StoredArticle]) -> list[EventChange]:
        """Group the new articles of `stored` (inserted already) and refresh the events that
        any of `stored` (new ones and new sightings of known ones) belongs to; the changes
        are in the order of `stored`, new articles first."""
        decisions = self.decide([a for a in stored if a.is_new])
        self._write_articles(session, decisions)
        return self.finish(session, stored, decisions)

    def decide(self, new: list[StoredArticle]) -> list[Placement]:
        """Assign new articles (ids known, rows maybe not inserted yet) to events in memory."""
        out: list[Placement] = []
        add = self.clusterer.add
        for article in new:
            when = article_time(article.published, article.first_seen)
            decision = add(
                article.id, article.title, body_of(article.text, article.summary), when.timestamp()
            )
            out.append((article, decision, when))
        return out

    @staticmethod
    def article_columns(decisions: list[Placement]) -> list[dict[str, object]]:
        """The articles' event columns for each decision, as written with their INSERT."""
        return [
            {
                "event_id": d.event_id,
                "duplicate_of": d.duplicate_of,
                "group_stage": d.stage,
                "group_score": round(float(d.score), 4),
                "group_explain": _explanation(d),
                "fingerprint": _fingerprint(d),
            }
            for _a, d, _w in decisions
        ]

    def finish(
        self, session: Session, stored: list[StoredArticle], decisions: list[Placement]
    ) -> list[EventChange]:
        """After the articles of `decisions` are stored with their event columns: the events'
        rows, merges and counts; the changes (see assign_batch)."""
        now = utcnow()
        resolve = self.clusterer.resolve
        # Where each article is now: a split later in the batch may have moved it.
        event_of = self.clusterer.article_event.get
        changes = [
            EventChange(
                article_id=a.id,
                event_id=resolve(event_of(a.id, d.event_id)),
                opened=d.opened,
                duplicate_of=d.duplicate_of,
                merged_event_ids=tuple(d.merged),
                split=_event_split(d.split),
            )
            for a, d, _w in decisions
        ]
        self._write_new_events(session, decisions, now)
        self._write_regroupings(session, decisions, now)
        # What each touched event gains: (source, time, whether a new member).
        gains: dict[int, list[tuple[int | None, datetime | None, bool]]] = {}
        for (a, _d, _w), change in zip(decisions, changes, strict=True):
            gains.setdefault(change.event_id, []).append((a.source_id, _stats_time(a), True))
        # Known articles seen at one more source: their events may have one more source.
        sighted = {a.id: a for a in stored if not a.is_new and a.new_sighting}
        for article_id, event_id in self._events_of(session, list(sighted)).items():
            changes.append(
                EventChange(article_id=article_id, event_id=event_id, opened=False, sighting=True)
            )
            gains.setdefault(event_id, []).append((sighted[article_id].source_id, None, False))
        absorbed = [g for _a, d, _w in decisions for g in d.merged]
        split = [e for _a, d, _w in decisions if d.split for e in _split_events(d.split)]
        for event_id in chain(absorbed, split):
            self.stats.pop(event_id, None)
        recount = {resolve(e) for e in chain(absorbed, split)}
        self._count(session, gains, recount)
        self._write_stats(session, set(gains) | recount, now)
        EVENTS_OPENED.inc(sum(1 for c in changes if c.opened))
        EVENTS_MERGED.inc(sum(len(c.merged_event_ids) for c in changes))
        EVENTS_SPLIT.inc(sum(1 for c in changes if c.split))
        return changes

    def _write_new_events(
        self,
        session: Session,
        decisions: list[tuple[StoredArticle, Decision, datetime]],
        now: datetime,
    ) -> None:
        rows: list[dict[str, Any]] = [
            {
                "id": d.event_id,
                "title": a.title,
                "first_seen": when,
                "last_seen": when,
                "article_count": 1,
                "source_count": 1,
                "top_entities": [],
                "merged_into": None,
                "revision": 0,  # _write_stats makes it 1
                "created_at": now,
                "updated_at": now,
            }
            for a, d, when in decisions
            if d.opened
        ]
        if rows:
            session.execute(insert(EVENTS), rows)

    def _write_articles(self, session: Session, decisions: list[Placement]) -> None:
        if not decisions:
            return
        rows = [
            {
                "b_id": a.id,
                "b_event": d.event_id,
                "b_dup": d.duplicate_of,
                "b_stage": d.stage,
                "b_score": round(float(d.score), 4),
                "b_explain": _explanation(d),
                "b_fp": _fingerprint(d),
            }
            for a, d, _w in decisions
        ]
        statement = (
            update(ARTICLES)
            .where(A.id == bindparam("b_id"))
            .values(
                event_id=bindparam("b_event"),
                duplicate_of=bindparam("b_dup"),
                group_stage=bindparam("b_stage"),
                group_score=bindparam("b_score"),
                group_explain=bindparam("b_explain"),
                fingerprint=bindparam("b_fp"),
            )
        )
        session.connection().execute(statement, rows)

    def _write_regroupings(
        self,
        session: Session,
        decisions: list[tuple[StoredArticle, Decision, datetime]],
        now: datetime,
    ) -> None:
        """Merges and splits, in the order they happened. Absorbed events keep their row
        (merged_into) and hand their articles over; a split opens a row for the moved
        articles (split_from) and moves them by id."""
        resolve = self.clusterer.resolve
        for _a, d, _w in decisions:
            for gone in d.merged:
                keep = resolve(gone)
                session.execute(update(ARTICLES).where(A.event_id == gone).values(event_id=keep))
                session.execute(
                    update(EVENTS)
                    .where(or_(E.id == gone, E.merged_into == gone))
                    .values(merged_into=keep, updated_at=now, revision=E.revision + 1)
                )
            if d.split is not None:
                self._write_split(session, d.split, now)

    @staticmethod
    def _write_split(session: Session, split: Split, now: datetime) -> None:
        new_id = split.new_event_id
        title = session.execute(select(A.title).where(A.id == new_id)).scalar()
        row: dict[str, Any] = {
            "id": new_id,
            "title": title,
            "first_seen": now,  # _write_stats sets the counts and the span
            "last_seen": now,
            "article_count": len(split.moved),
            "source_count": 1,
            "top_entities": [],
            "merged_into": None,
            "split_from": split.event_id,
            "revision": 0,
            "created_at": now,
            "updated_at": now,
        }
        session.execute(insert(EVENTS), [row])
        for start in range(0, len(split.moved), STATS_CHUNK):
            moved = split.moved[start : start + STATS_CHUNK]
            session.execute(update(ARTICLES).where(A.id.in_(moved)).values(event_id=new_id))

    def _events_of(self, session: Session, article_ids: list[int]) -> dict[int, int]:
        if not article_ids:
            return {}
        query = select(A.id, A.event_id).where(A.id.in_(article_ids), A.event_id.is_not(None))
        return {row.id: row.event_id for row in session.execute(query)}

    def _count(
        self,
        session: Session,
        gains: dict[int, list[tuple[int | None, datetime | None, bool]]],
        recount: set[int],
    ) -> None:
        """Bring `self.stats` up to date with this batch: events not in memory yet (or just
        merged) are counted from the store, which already holds the batch; the others add
        what the batch gave them."""
        missing = {e for e in gains if e not in self.stats} | recount
        self.stats.update(self._recount(session, missing))
        for event_id, items in gains.items():
            if event_id in missing:
                continue
            st = self.stats[event_id]
            for source_id, when, new in items:
                if new:
                    st.articles += 1
                if source_id is not None:
                    st.sources.add(source_id)
                if when is not None:
                    st.first, st.last = min(st.first, when), max(st.last, when)
        if len(self.stats) > 2 * len(self.clusterer.events) + STATS_CHUNK:
            # Events the clustering forgot (out of the window) are counted afresh if needed.
            live = self.clusterer.events
            self.stats = {e: st for e, st in self.stats.items() if e in live}

    def _recount(self, session: Session, event_ids: Iterable[int]) -> dict[int, EventStats]:
        """Articles, distinct sources and time span of events, counted in the store."""
        ids = sorted(set(event_ids))
        out: dict[int, EventStats] = {}
        when = func.coalesce(A.published, A.first_seen)
        for start in range(0, len(ids), STATS_CHUNK):
            chunk = ids[start : start + STATS_CHUNK]
            query = (
                select(
                    A.event_id,
                    func.count(A.id).label("articles"),
                    func.min(when).label("first"),
                    func.max(when).label("last"),
                )
                .where(A.event_id.in_(chunk))
                .group_by(A.event_id)
            )
            for r in session.execute(query):
                out[r.event_id] = EventStats(r.articles, as_utc(r.first), as_utc(r.last))
            pairs = (
                select(A.event_id, SIGHTINGS.c.source_id)
                .select_from(ARTICLES.join(SIGHTINGS, SIGHTINGS.c.article_id == A.id))
                .where(A.event_id.in_(chunk))
                .distinct()
            )
            for event_id, source_id in session.execute(pairs):
                if event_id in out:
                    out[event_id].sources.add(source_id)
        return out

    def _write_stats(self, session: Session, event_ids: Iterable[int], now: datetime) -> None:
        rows = [
            {
                "b_id": event_id,
                "b_articles": st.articles,
                "b_sources": max(len(st.sources), 1),
                "b_first": st.first,
                "b_last": st.last,
                "b_entities": self.clusterer.top_entities(event_id),
                "b_now": now,
            }
            for event_id in sorted(event_ids)
            if (st := self.stats.get(event_id)) is not None
        ]
        if not rows:
            return
        statement = (
            update(EVENTS)
            .where(E.id == bindparam("b_id"))
            .values(
                article_count=bindparam("b_articles"),
                source_count=bindparam("b_sources"),
                first_seen=bindparam("b_first"),
                last_seen=bindparam("b_last"),
                top_entities=bindparam("b_entities"),
                updated_at=bindparam("b_now"),
                revision=E.revision + 1,
            )
        )
        session.connection().execute(statement, rows)


def _stats_time(article: StoredArticle) -> datetime:
    """The time the events table spans: publication, else first seen (as the recount)."""
    return as_utc(article.published if article.published is not None else article.first_seen)


def _split_events(split: Split) -> tuple[int, int]:
    return split.event_id, split.new_event_id


def _event_split(split: Split | None) -> EventSplit | None:
    if split is None:
        return None
    return EventSplit(split.event_id, split.new_event_id, split.moved)


def _fingerprint(decision: Decision) -> bytes | None:
    if decision.signature is None:
        return None
    return decision.signature.astype("<u4").tobytes()


def _explanation(decision: Decision) -> dict[str, Any]:
    out: dict[str, Any] = {"stage": decision.stage, "score": round(float(decision.score), 4)}
    if decision.duplicate_of is not None:
        out["duplicate_of"] = decision.duplicate_of
    if decision.shared_entities:
        out["shared_entities"] = list(decision.shared_entities)
    if decision.merged:
        out["merged"] = list(decision.merged)
    if decision.split is not None:
        out["split"] = {
            "event": decision.split.event_id,
            "new_event": decision.split.new_event_id,
            "moved": len(decision.split.moved),
            "ncut": decision.split.score,
        }
    return out
