"""The grouping stage over the store: assigns new articles to events inside the ingest
transaction and keeps the events table in step.

The clustering itself (cluster.py) is in memory; at start it is rebuilt from the articles of
the last time window, so a restart continues the same events.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import bindparam, distinct, func, insert, or_, select, update
from sqlmodel import Session

from newswatch.grouping.api import EventChange
from newswatch.grouping.cluster import Clusterer, Decision
from newswatch.grouping.settings import GroupingSettings
from newswatch.metrics import EVENTS_MERGED, EVENTS_OPENED
from newswatch.store.articles import StoredArticle
from newswatch.store.columns import as_utc, utcnow
from newswatch.store.models import Article, Event, Sighting

ARTICLES = Article.__table__  # type: ignore[attr-defined]
EVENTS = Event.__table__  # type: ignore[attr-defined]
SIGHTINGS = Sighting.__table__  # type: ignore[attr-defined]
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


class EventGrouper:
    """Assigns articles to events; one instance per process (the state is in memory)."""

    def __init__(self, settings: GroupingSettings | None = None):
        self.settings = settings or GroupingSettings()
        self.clusterer = Clusterer(self.settings)

    # --- start and rollback -------------------------------------------------------------
    def load(self, session: Session) -> int:
        """Rebuild the in-memory state from the articles of the last window; returns how many
        articles were read."""
        self.clusterer = Clusterer(self.settings)
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
                A.fingerprint,
            )
            .where(A.event_id.is_not(None), or_(A.first_seen >= since, when >= since))
            .order_by(A.id)
            .execution_options(yield_per=LOAD_CHUNK)
        )
        restore = self.clusterer.restore
        count = 0
        for row in session.execute(query):
            signature = np.frombuffer(row.fingerprint, dtype="<u4") if row.fingerprint else None
            restore(
                row.id,
                row.event_id,
                row.title,
                body_of(row.text, row.summary),
                article_time(row.published, row.first_seen).timestamp(),
                signature=signature,
            )
            count += 1
        return count

    # --- ingest -------------------------------------------------------------------------
    def assign_batch(self, session: Session, stored: list[StoredArticle]) -> list[EventChange]:
        """Group the new articles of `stored` and refresh the events that any of `stored`
        (new ones and new sightings of known ones) belongs to; the changes are in the order
        of `stored`, new articles first."""
        now = utcnow()
        decisions: list[tuple[StoredArticle, Decision, datetime]] = []
        for article in stored:
            if not article.is_new:
                continue
            when = article_time(article.published, article.first_seen)
            decision = self.clusterer.add(
                article.id, article.title, body_of(article.text, article.summary), when.timestamp()
            )
            decisions.append((article, decision, when))
        resolve = self.clusterer.resolve
        changes = [
            EventChange(
                article_id=a.id,
                event_id=resolve(d.event_id),
                opened=d.opened,
                duplicate_of=d.duplicate_of,
                merged_event_ids=tuple(d.merged),
            )
            for a, d, _w in decisions
        ]
        self._write_new_events(session, decisions, now)
        self._write_articles(session, decisions)
        self._write_merges(session, decisions, now)
        # Known articles seen at one more source: their events may have one more source.
        sighted = [a.id for a in stored if not a.is_new and a.new_sighting]
        for article_id, event_id in self._events_of(session, sighted).items():
            changes.append(
                EventChange(article_id=article_id, event_id=event_id, opened=False, sighting=True)
            )
        self.refresh_events(session, {c.event_id for c in changes}, now)
        EVENTS_OPENED.inc(sum(1 for c in changes if c.opened))
        EVENTS_MERGED.inc(sum(len(c.merged_event_ids) for c in changes))
        return changes

    def _write_new_events(
        self,
        session: Session,
        decisions: list[tuple[StoredArticle, Decision, datetime]],
        now: datetime,
    ) -> None:
        rows = [
            {
                "id": d.event_id,
                "title": a.title,
                "first_seen": when,
                "last_seen": when,
                "article_count": 1,
                "source_count": 1,
                "top_entities": [],
                "merged_into": None,
                "revision": 0,  # refresh_events makes it 1
                "created_at": now,
                "updated_at": now,
            }
            for a, d, when in decisions
            if d.opened
        ]
        if rows:
            session.execute(insert(EVENTS), rows)

    def _write_articles(
        self, session: Session, decisions: list[tuple[StoredArticle, Decision, datetime]]
    ) -> None:
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

    def _write_merges(
        self,
        session: Session,
        decisions: list[tuple[StoredArticle, Decision, datetime]],
        now: datetime,
    ) -> None:
        """Absorbed events keep their row (merged_into) and hand their articles over."""
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

    def _events_of(self, session: Session, article_ids: list[int]) -> dict[int, int]:
        if not article_ids:
            return {}
        query = select(A.id, A.event_id).where(A.id.in_(article_ids), A.event_id.is_not(None))
        return {row.id: row.event_id for row in session.execute(query)}

    def refresh_events(self, session: Session, event_ids: Iterable[int], now: datetime) -> None:
        """Recount articles and distinct sources, time span and top entities of events."""
        ids = sorted(set(event_ids))
        for start in range(0, len(ids), STATS_CHUNK):
            chunk = ids[start : start + STATS_CHUNK]
            when = func.coalesce(A.published, A.first_seen)
            query = (
                select(
                    A.event_id,
                    func.count(distinct(A.id)).label("articles"),
                    func.count(distinct(SIGHTINGS.c.source_id)).label("sources"),
                    func.min(when).label("first"),
                    func.max(when).label("last"),
                )
                .select_from(ARTICLES.outerjoin(SIGHTINGS, SIGHTINGS.c.article_id == A.id))
                .where(A.event_id.in_(chunk))
                .group_by(A.event_id)
            )
            rows = [
                {
                    "b_id": r.event_id,
                    "b_articles": r.articles,
                    "b_sources": max(r.sources, 1),
                    "b_first": as_utc(r.first),
                    "b_last": as_utc(r.last),
                    "b_entities": self.clusterer.top_entities(r.event_id),
                    "b_now": now,
                }
                for r in session.execute(query)
            ]
            if not rows:
                continue
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
    return out
