"""The grouping stage over the store: assigns new articles to events inside the ingest
transaction and keeps the events table in step (the statements are in store/events.py).

The clustering itself (cluster.py) is in memory; at start it is rebuilt from the articles of
the last time window, so a restart continues the same events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

from sqlmodel import Session

from newswatch.grouping.changes import EventChange, EventSplit
from newswatch.grouping.cluster import Clusterer, Decision, Split
from newswatch.grouping.settings import GroupingSettings
from newswatch.prometheus_registry import EVENTS_MERGED, EVENTS_OPENED, EVENTS_SPLIT
from newswatch.store import events as store
from newswatch.store.articles import StoredArticle
from newswatch.store.columns import utcnow
from newswatch.store.events import EventStats, Merge, Regrouping, SplitOff
from newswatch.store.timing import article_time

# Events counted in memory beyond the live ones before the forgotten ones are dropped.
STATS_SLACK = 500
# Rows read at a time when the in-memory state is rebuilt at start.
LOAD_CHUNK = 2000


def body_of(text: str | None, summary: str | None) -> str:
    return text or summary or ""


# A new article, where it went, and the time it counts at.
Placement = tuple[StoredArticle, Decision, datetime]


class EventGrouper:
    """Assigns articles to events; one instance per process (the state is in memory).
    `stats` holds what the events table counts of live events, so a batch updates it by
    its own articles instead of recounting every member of a big event."""

    def __init__(self, settings: GroupingSettings | None = None):
        self.settings = settings or GroupingSettings()
        self.clusterer = Clusterer(self.settings)
        self.stats: dict[int, EventStats] = {}

    # --- start and rollback -------------------------------------------------------------
    def load(
        self,
        session: Session,
        since: datetime | None = None,
        *,
        placed: Mapping[int, int] | None = None,
        record: list[tuple[int, int]] | None = None,
        apart: Iterable[tuple[int, int]] | None = None,
    ) -> int:
        """Rebuild the in-memory state from the articles of the last window; returns how many
        articles were read. The scaled mode's grouper gives the window's start (`since`) and
        which articles go to which event (`placed`, as an earlier restore recorded them in
        `record`) and which events stay apart (`apart`, what `clusterer.apart` held after
        it), so a standby restores what its leader restored, whatever was merged since."""
        self.clusterer = Clusterer(self.settings)
        self.stats = {}
        if since is None:
            since = self.window_start(session)
        if since is None:
            return 0
        restore = self.clusterer.restore
        count = 0
        for row in store.window_articles(session, since, LOAD_CHUNK):
            event_id = row.event_id if placed is None else placed.get(row.id)
            if event_id is None:
                continue
            if record is not None:
                record.append((row.id, event_id))
            # Signatures are recomputed from the text rather than read from `fingerprint`:
            # always comparable with new ones, whichever version stored them.
            restore(
                row.id,
                event_id,
                row.title,
                body_of(row.text, row.summary),
                article_time(row.published, row.first_seen).timestamp(),
                opened=row.group_stage == "new",
                duplicate_of=row.duplicate_of,
            )
            count += 1
        # Events split apart stay apart after a restart.
        live = self.clusterer.events
        pairs = store.splits_since(session, since) if apart is None else apart
        for event_id, split_from in pairs:
            if event_id in live or split_from in live:
                self.clusterer.keep_apart(event_id, split_from)
        return count

    def window_start(self, session: Session) -> datetime | None:
        """Where the window that `load` restores starts now (None: the store has no article)."""
        latest = store.latest_first_seen(session)
        return None if latest is None else latest - timedelta(hours=self.settings.window_hours)

    # --- ingest -------------------------------------------------------------------------
    def assign_batch(self, session: Session, stored: list[StoredArticle]) -> list[EventChange]:
        """Group the new articles of `stored` (inserted already) and refresh the events that
        any of `stored` (new ones and new sightings of known ones) belongs to; the changes
        are in the order of `stored`, new articles first."""
        decisions = self.decide([a for a in stored if a.is_new])
        store.place_articles(
            session,
            [
                {"id": a.id, **cols}
                for (a, _d, _w), cols in zip(
                    decisions, self.article_columns(decisions), strict=True
                )
            ],
        )
        return self.finish(session, stored, decisions)

    def decide(self, new: list[StoredArticle]) -> list[Placement]:
        """Assign new articles (ids known, rows maybe not inserted yet) to events in memory,
        as one batch (Clusterer.add_many: the decisions of one at a time)."""
        times = [article_time(a.published, a.first_seen) for a in new]
        decisions = self.clusterer.add_many(
            [
                (a.id, a.title, body_of(a.text, a.summary), when.timestamp())
                for a, when in zip(new, times, strict=True)
            ]
        )
        return list(zip(new, decisions, times, strict=True))

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
        store.insert_events(session, _new_events(decisions, now))
        store.apply_regroupings(session, self._regroupings(decisions), now)
        # What each touched event gains: (source, time, whether a new member).
        gains: dict[int, list[tuple[int | None, datetime | None, bool]]] = {}
        for (a, _d, when), change in zip(decisions, changes, strict=True):
            gains.setdefault(change.event_id, []).append((a.source_id, when, True))
        # Known articles seen at one more source: their events may have one more source.
        # (Several sources may carry one known article in a batch: each source counts.)
        sighted: dict[int, list[StoredArticle]] = {}
        for a in stored:
            if not a.is_new and a.new_sighting:
                sighted.setdefault(a.id, []).append(a)
        for article_id, event_id in store.events_of(session, list(sighted)).items():
            changes.append(
                EventChange(article_id=article_id, event_id=event_id, opened=False, sighting=True)
            )
            gains.setdefault(event_id, []).extend(
                (a.source_id, None, False) for a in sighted[article_id]
            )
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

    def _regroupings(self, decisions: list[Placement]) -> list[Regrouping]:
        """The batch's merges and splits, in the order they happened; a merged event's
        survivor is the one it resolves to at the end of the batch."""
        resolve = self.clusterer.resolve
        out: list[Regrouping] = []
        for _a, d, _w in decisions:
            out += [Merge(gone, resolve(gone)) for gone in d.merged]
            if d.split is not None:
                out.append(SplitOff(d.split.event_id, d.split.new_event_id, d.split.moved))
        return out

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
        self.stats.update(store.count_events(session, missing))
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
        if len(self.stats) > 2 * len(self.clusterer.events) + STATS_SLACK:
            # Events the clustering forgot (out of the window) are counted afresh if needed.
            live = self.clusterer.events
            self.stats = {e: st for e, st in self.stats.items() if e in live}

    def _write_stats(self, session: Session, event_ids: Iterable[int], now: datetime) -> None:
        rows = [
            {
                "id": event_id,
                "article_count": st.articles,
                "source_count": max(len(st.sources), 1),
                "first_seen": st.first,
                "last_seen": st.last,
                "top_entities": self.clusterer.top_entities(event_id),
                "updated_at": now,
            }
            for event_id in sorted(event_ids)
            if (st := self.stats.get(event_id)) is not None
        ]
        store.write_event_stats(session, rows)


def _new_events(decisions: list[Placement], now: datetime) -> list[dict[str, Any]]:
    """The events rows the batch opens (the articles' stats follow in _write_stats)."""
    return [
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
    if decision.evidence:
        out["evidence"] = list(decision.evidence)
    if decision.near:
        out["near"] = [
            {"event": event_id, "score": score, "reason": reason}
            for event_id, score, reason in decision.near
        ]
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
