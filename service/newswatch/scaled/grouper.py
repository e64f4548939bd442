"""`newswatch run --role group`: one grouper at a time over the articles fetch workers store
ungrouped (Postgres), standbys ready to take over (docs/decisions/0166, 0167, 0168).

The leader holds the grouping lock, takes the ungrouped articles in id order, a batch at a
time, and runs them through the same stages as the single-process pipeline (EventGrouper's
decide and finish, AlertStage.on_changes), writing everything in one transaction fenced by
the lease's epoch; each batch is logged. A standby replays the logged batches through the
same in-memory grouping as they come, so it holds the leader's state: when the leader dies
it bumps the epoch, replays what is left of the log, and goes on from the first ungrouped
article — the same events as one grouper that never stopped.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Engine

from newswatch.alerts.stage import AlertStage
from newswatch.config import FileConfig, Settings
from newswatch.grouping.settings import GroupingSettings
from newswatch.grouping.stage import EventGrouper
from newswatch.log import get_logger
from newswatch.store.articles import StoredArticle
from newswatch.store.columns import utcnow
from newswatch.store.db import session_scope
from newswatch.store.grouper_lease import (
    ARTICLES_CHANNEL,
    GROUPED_CHANNEL,
    Deposed,
    Horizon,
    Origin,
    Overlap,
    articles_by_id,
    hold_lease,
    horizon_settled,
    iter_batches_after,
    last_seq,
    listen,
    lock_alive,
    log_batch,
    log_origin,
    notify,
    origin_logged_at,
    place_ungrouped,
    prune_log,
    raw_connection,
    read_horizon,
    read_lease,
    read_origin,
    set_lease_origin,
    sighting_of,
    snapshot,
    take_late_sightings,
    take_lease,
    ungrouped_articles,
    wait_for_notifications,
    wait_grouping_lock,
    wake_listeners,
)

log = get_logger(__name__)

# How soon a leader looks again when ungrouped articles wait behind a horizon whose
# writers have not ended yet (a fetch worker's store transaction: milliseconds).
HORIZON_RECHECK_SECONDS = 0.05
# A standby replays at most this many logged articles to build the leader's state; beyond
# it (a long-lived leader), it restores the window as a restarted process does instead.
REPLAY_LIMIT = 300_000
# The leader starts a new origin (a checkpoint) once this many articles were logged after
# its origin, or once its origin is older than the grouping window, and prunes the log
# before it: the log holds about one window, and a fresh standby replays at most this many
# articles after restoring the checkpoint (docs/decisions/0212).
CHECKPOINT_ARTICLES = REPLAY_LIMIT // 2


class NotScalable(Exception):
    """The store or the config cannot run the scaled grouper (SQLite, grouping disabled)."""


@dataclass
class GroupingState:
    """The in-memory grouping and where it stands: the window restored at its origin, then
    every logged batch after the origin replayed, up to `seq`. `origin_seq` names a logged
    origin (the leader's, when equal to the lease's); a state restored afresh has none until
    its process leads and logs `origin`."""

    grouper: EventGrouper
    origin: Origin
    origin_seq: int | None
    seq: int
    # Articles of the logged batches after the origin this state holds (replayed or
    # grouped): a checkpoint starts a new origin when they are many (decision 0212).
    logged: int = 0
    mismatches: int = 0
    restored: int = 0
    replayed: int = 0
    seconds: float = 0.0


def build_state(
    engine: Engine, settings: GroupingSettings, replay_limit: int, *, fresh: bool = False
) -> GroupingState:
    """The leader's grouping state: the lease's origin restored, then the log replayed to
    its end. Without a lease (no leader yet), with more than `replay_limit` articles to
    replay, or `fresh`, a new origin now: the window restored as a restarted single process
    restores it, at the log's end. The lease, the origin and the log are read in one
    snapshot: a checkpoint committed meanwhile (a new origin, the log before it pruned)
    cannot take the origin away between them (decision 0095)."""
    started = time.perf_counter()
    grouper = EventGrouper(settings)
    with snapshot(engine) as session:
        lease = None if fresh else read_lease(session)
        origin = read_origin(session, lease.origin_seq) if lease is not None else None
        later = list(iter_batches_after(session, origin.after_seq)) if origin else []
        if origin is None or sum(len(ids) for _s, ids in later) > replay_limit:
            state = _fresh_state(session, grouper)
        else:
            state = GroupingState(grouper, origin, lease.origin_seq if lease else None, 0)
            if origin.placed:
                state.restored = grouper.load(
                    session, origin.since, placed=dict(origin.placed), apart=origin.apart
                )
            state.seq = origin.after_seq
            replay(session, state, later)
    state.seconds = time.perf_counter() - started
    log.info(
        "grouper.state_built",
        restored=state.restored,
        replayed=state.replayed,
        origin_seq=state.origin_seq,
        seq=state.seq,
        seconds=round(state.seconds, 3),
    )
    return state


def _fresh_state(session: Any, grouper: EventGrouper) -> GroupingState:
    """The store's window restored now, its placement recorded for the origin row."""
    since = grouper.window_start(session)
    placed: list[tuple[int, int]] = []
    restored = grouper.load(session, since, record=placed) if since else 0
    seq = last_seq(session)
    origin = Origin(since, placed, sorted(grouper.clusterer.apart), seq)
    return GroupingState(grouper, origin, None, seq, restored=restored)


def replay(session: Any, state: GroupingState, batches: list[tuple[int, list[int]]]) -> None:
    """Put the logged batches through the in-memory grouping, in order, as the leader did;
    each decision is checked against the one stored (a difference means this state is not
    the leader's: counted, and the caller starts afresh)."""
    for seq, ids in batches:
        found = articles_by_id(session, ids)
        # An article deleted since (retention) is left out, as a restore leaves it out.
        new = [found[i][0] for i in ids if i in found]
        for article, decision, _when in state.grouper.decide(new):
            row = found[article.id][1]
            if (decision.stage, round(float(decision.score), 4), decision.duplicate_of) != (
                row.group_stage,
                row.group_score,
                row.duplicate_of,
            ):
                state.mismatches += 1
        state.seq = seq
        state.replayed += len(new)
        state.logged += len(ids)


@dataclass
class GrouperOptions:
    batch: int = 500
    poll_seconds: float = 5.0
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    replay_limit: int = REPLAY_LIMIT
    checkpoint_articles: int = CHECKPOINT_ARTICLES


class Grouper:
    """One `--role group` process: a standby until it holds the grouping lock, then the
    leader until it dies or is deposed."""

    def __init__(
        self, engine: Engine, config: FileConfig, settings: Settings, options: GrouperOptions
    ):
        if engine.dialect.name != "postgresql":
            raise NotScalable(
                "--role group runs on Postgres only (DATABASE_URL is "
                f"{engine.dialect.name}); on SQLite run the single-process `newswatch run`"
            )
        if not config.grouping.enabled:
            raise NotScalable("--role group: grouping is disabled in the config (grouping.enabled)")
        self.engine = engine
        self.grouping = config.grouping
        self.options = options
        self.alerts = AlertStage(config.rules, config.channels, settings) if config.rules else None
        self.stop = threading.Event()
        self.locked = threading.Event()
        self.epoch: int | None = None
        self.state: GroupingState | None = None
        # Articles are grouped in id order: up to `settled`, whose writers all ended, while
        # `horizon` waits for its writers (docs/decisions/0211).
        self.settled = 0
        self.horizon: Horizon | None = None
        self.origin_at: datetime | None = None  # when the leader's origin was logged
        self._lock_conn: psycopg.Connection[Any] | None = None
        self._listen_conn: psycopg.Connection[Any] | None = None

    # --- the loop ----------------------------------------------------------------------
    def run(self) -> None:
        self._listen_conn = raw_connection(self.engine)
        listen(self._listen_conn, [ARTICLES_CHANNEL, GROUPED_CHANNEL])
        self._wait_for_lock()
        try:
            self.state = self._build()
            while not self.stop.is_set():
                if self.locked.is_set():
                    self._lead()
                else:
                    self._follow_or_log()
                    self._wait()
        finally:
            for conn in (self._lock_conn, self._listen_conn):
                if conn is not None:
                    conn.close()

    def _build(self) -> GroupingState:
        return build_state(self.engine, self.grouping, self.options.replay_limit)

    def _wait_for_lock(self) -> None:
        """A thread blocks on the grouping lock on a connection of its own; the loop sees
        `locked` set when it got it (the holder's session ended)."""
        self.locked.clear()
        conn = self._lock_conn = raw_connection(self.engine)

        def wait() -> None:
            try:
                wait_grouping_lock(conn)
                self.locked.set()
                wake_listeners(conn)
            except psycopg.Error:
                return  # the connection was closed under it: this process steps down

        threading.Thread(target=wait, name="grouper-lock", daemon=True).start()
        log.info("grouper.standby", holder=self.options.holder)

    def _wait(self, seconds: float | None = None) -> None:
        assert self._listen_conn is not None
        wait_for_notifications(self._listen_conn, seconds or self.options.poll_seconds)

    # --- standby -----------------------------------------------------------------------
    def _follow_or_log(self) -> None:
        """A standby outlives a failed read (the store restarting): it logs it and builds
        its state again (a half-replayed batch would leave it off the log); if that fails
        too, the next wake-up (or the lock) builds it."""
        try:
            self._follow()
        except Exception:
            log.exception("grouper.follow_failed")
            self.state = None
            try:
                self.state = self._build()
            except Exception:
                log.exception("grouper.build_failed")

    def _follow(self) -> None:
        """Replay what the leader logged since; start afresh from the leader's origin when
        this state is not the leader's (another origin, or a decision that differed). One
        snapshot: the log read is the one the lease read names (a checkpoint committed in
        between would have pruned batches this state has not replayed)."""
        if self.state is None:
            self.state = self._build()
        with snapshot(self.engine) as session:
            lease = read_lease(session)
            if lease is not None and lease.origin_seq != self.state.origin_seq:
                # Built afresh at the same moment as the leader's (processes started
                # together): the same origin, no need to build it again.
                if self.state.origin_seq is None and self.state.origin == read_origin(
                    session, lease.origin_seq
                ):
                    self.state.origin_seq = lease.origin_seq
                else:
                    self.state = None
            if self.state is not None:
                replay(session, self.state, list(iter_batches_after(session, self.state.seq)))
        if self.state is None or self.state.mismatches:
            if self.state is not None:
                log.warning("grouper.diverged", mismatches=self.state.mismatches)
            self.state = self._build()

    # --- leader ------------------------------------------------------------------------
    def _lead(self) -> None:
        """Take the lease (bumping the epoch fences the previous leader), replay what it
        logged, then group until stopped, deposed or the lock's session is lost."""
        assert self._lock_conn is not None
        if self.state is None:  # a standby whose last build failed
            self.state = self._build()
        started = time.perf_counter()
        with session_scope(self.engine) as session:
            self.epoch = self._take_lease(session)
        with session_scope(self.engine) as session:
            replay(session, self.state, list(iter_batches_after(session, self.state.seq)))
        if self.state.mismatches:  # not the state its origin gives: a new origin, now
            log.warning("grouper.diverged", mismatches=self.state.mismatches)
            self.state = build_state(self.engine, self.grouping, 0, fresh=True)
            with session_scope(self.engine) as session:
                self.epoch = self._take_lease(session)
        log.info(
            "grouper.leading",
            epoch=self.epoch,
            holder=self.options.holder,
            seq=self.state.seq,
            catch_up_seconds=round(time.perf_counter() - started, 3),
        )
        while not self.stop.is_set():
            try:
                grouped = self.group_batch()
                if self._checkpoint_due():  # fenced like a batch; on failure, rebuilt
                    self.checkpoint()
            except Deposed as exc:
                log.warning("grouper.deposed", epoch=self.epoch, error=str(exc))
                self._step_down()
                return
            except Overlap as exc:
                log.error("grouper.overlap", epoch=self.epoch, error=str(exc))
                self._step_down()
                return
            except Exception:
                # The batch (or checkpoint) rolled back but the in-memory grouping took it:
                # rebuild it from the store (the lease's origin and the log), then try again.
                log.exception("grouper.batch_failed", epoch=self.epoch)
                self.state = self._build()
                self.stop.wait(1.0)
                continue
            if grouped < self.options.batch:
                if not lock_alive(self._lock_conn):
                    log.error("grouper.lock_lost", epoch=self.epoch)
                    self._step_down()
                    return
                if grouped == 0:  # its transaction renewed the lease's heartbeat
                    self._wait(HORIZON_RECHECK_SECONDS if self.horizon is not None else None)

    def _take_lease(self, session: Any) -> int:
        """Bump the epoch (fencing the previous leader) and name this state's origin, logging
        it first if it is new."""
        assert self.state is not None
        epoch = take_lease(session, self.options.holder)
        if self.state.origin_seq is None:
            self.state.origin_seq = log_origin(session, epoch, self.state.origin)
        set_lease_origin(session, self.state.origin_seq)
        # Not past this state's own origin: a state built before the old leader's last
        # batches (a standby) still has them to replay after taking the lease.
        keep_from = min(self.state.origin_seq, self.state.origin.after_seq + 1)
        pruned = prune_log(session, keep_from)
        self.origin_at = origin_logged_at(session, self.state.origin_seq)
        if pruned:
            log.info("grouper.log_pruned", rows=pruned, origin_seq=self.state.origin_seq)
        return epoch

    def _checkpoint_due(self) -> bool:
        """Whether the log after the origin outgrew the checkpoint's bound: in articles, or
        in age (older than the grouping window, so everything before it is out of it)."""
        assert self.state is not None
        if self.state.logged >= self.options.checkpoint_articles:
            return True
        window = timedelta(hours=self.grouping.window_hours)
        return self.origin_at is not None and utcnow() - self.origin_at > window

    def checkpoint(self) -> None:
        """A new origin: this leader's state restored from the store as it stands (what a
        restarted single process restores), logged as the lease's origin, fenced like a
        batch; the log before it pruned. Standbys see the origin move and build from it."""
        assert self.epoch is not None
        started = time.perf_counter()
        self.state = build_state(self.engine, self.grouping, 0, fresh=True)
        with session_scope(self.engine) as session:
            hold_lease(session, self.epoch)
            self.state.origin_seq = log_origin(session, self.epoch, self.state.origin)
            set_lease_origin(session, self.state.origin_seq)
            pruned = prune_log(session, self.state.origin_seq)
            self.origin_at = origin_logged_at(session, self.state.origin_seq)
        log.info(
            "grouper.checkpoint",
            origin_seq=self.state.origin_seq,
            restored=self.state.restored,
            pruned=pruned,
            seconds=round(time.perf_counter() - started, 3),
        )

    def _step_down(self) -> None:
        """Give the lock up (closing its session) and become a standby with a state built
        afresh from the new leader's origin."""
        if self._lock_conn is not None:
            self._lock_conn.close()
        self.epoch = None
        self.state = self._build()
        self._wait_for_lock()

    def group_batch(self) -> int:
        """Group the next ungrouped articles in one fenced transaction; how many."""
        assert self.state is not None and self.epoch is not None
        grouper = self.state.grouper
        with session_scope(self.engine) as session:
            up_to = self._settled_top(session)  # reads only: the fence is the first write
            hold_lease(session, self.epoch)  # the fence, and the lease row locked
            new = ungrouped_articles(session, self.options.batch, up_to)
            # Taken after the articles: a sighting of one of them is then counted by the
            # recount of its event below, or as a late sighting here (a source set: once).
            late = [sighting_of(a, s) for a, s in take_late_sightings(session, self.options.batch)]
            if not new and not late:
                return 0
            self._group(session, grouper, new, late)
            # The log replays grouping decisions; sightings decide nothing.
            seq = log_batch(session, self.epoch, [a.id for a in new]) if new else None
            notify(session, GROUPED_CHANNEL)
        if seq is not None:
            self.state.seq = seq
            self.state.logged += len(new)
        log.debug("grouper.batch", articles=len(new), sightings=len(late), epoch=self.epoch)
        return len(new) + len(late)

    def _settled_top(self, session: Any) -> int:
        """The highest article id a batch may take now: ids are taken in id order, and an
        id below one taken must not commit later (docs/decisions/0211). A horizon read
        while writers ran settles once they have all ended; one read without writers has."""
        if self.horizon is not None and horizon_settled(session, self.horizon):
            self.settled = max(self.settled, self.horizon.top)
            self.horizon = None
        if self.horizon is None:
            now = read_horizon(session)
            if now.top > self.settled:
                if now.writers:
                    self.horizon = now
                else:
                    self.settled = now.top
        return self.settled

    def _group(
        self,
        session: Any,
        grouper: EventGrouper,
        new: list[StoredArticle],
        late: list[StoredArticle],
    ) -> None:
        decisions = grouper.decide(new) if new else []
        columns = grouper.article_columns(decisions)
        place_ungrouped(
            session,
            [{"id": a.id, **cols} for (a, _d, _w), cols in zip(decisions, columns, strict=True)],
        )
        # Fetch workers stored every source's sighting of these articles before they were
        # grouped: the touched events are counted afresh from the store, so their source
        # counts hold them all (the single process adds one source per new article).
        for _a, decision, _w in decisions:
            grouper.stats.pop(grouper.clusterer.resolve(decision.event_id), None)
        # Sightings of articles grouped before: their events gain a source, as in the single
        # process (grouping/stage.py finish), growth notifications included.
        changes = grouper.finish(session, [*new, *late], decisions)
        if self.alerts is not None and changes:
            self.alerts.on_changes(session, changes)
