"""`--role scheduler`: claims due sources in batches and queues one `poll_batch` per batch.

Every second (a procrastinate periodic task) it claims due sources with one statement each
pass (store/claims.py: `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n)`,
pushing `next_fetch_at` to the batch's lease), splits them into *lanes* by host and queues a
job per lane and chunk, with the lane as its procrastinate `lock`: jobs of one lane never
run at once, so one host's sources are fetched by one job at a time, through that worker's
host gate (politeness across workers: docs/decisions/0161). It also sends stalled jobs (their
worker died: no heartbeat) back to the queue, and runs retention once a day.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from procrastinate import App
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.types import JSONValue
from sqlalchemy import Engine

from newswatch.config import Settings
from newswatch.fetch.http import host_key
from newswatch.log import get_logger
from newswatch.prometheus_registry import SCHEDULER_LAST_TICK
from newswatch.retention import prune
from newswatch.scaled.queue import POLL_BATCH
from newswatch.store.claims import ClaimedSource, claim_due_sources, release_claims
from newswatch.store.db import session_scope
from newswatch.store.job_queue import FETCH_QUEUE

log = get_logger(__name__)

# How long a claimed source belongs to its batch before another claim may take it: a batch
# normally ends (and its polls move next_fetch_at on) long before; a worker that died is
# noticed by its missing heartbeat and its job runs again well within it.
CLAIM_LEASE = timedelta(minutes=10)
# Claims per tick at most (passes of `claim_limit` sources): a backlog drains over ticks
# without one tick holding the scheduler for long.
MAX_PASSES = 20
# A worker without a heartbeat this long is dead: its running jobs go back to the queue.
STALLED_AFTER_SECONDS = 30.0
STALLED_CHECK_EVERY = 10.0


@dataclass(frozen=True)
class Batch:
    lane: int
    source_ids: list[int]
    lease: datetime


def lane_of(url: str, lanes: int) -> int:
    """The lane of a source's host: the same host always lands in the same lane."""
    return zlib.crc32(host_key(url).encode()) % lanes


def form_batches(
    claimed: list[ClaimedSource], lease: datetime, lanes: int, size: int
) -> list[Batch]:
    """Claimed sources grouped by lane, each lane cut into chunks of at most `size`."""
    by_lane: dict[int, list[int]] = defaultdict(list)
    for source in claimed:
        by_lane[lane_of(source.url, lanes)].append(source.id)
    return [
        Batch(lane, ids[start : start + size], lease)
        for lane, ids in sorted(by_lane.items())
        for start in range(0, len(ids), size)
    ]


class ClaimScheduler:
    """What the scheduler role's tasks do (its procrastinate tasks call these)."""

    def __init__(self, engine: Engine, settings: Settings, app: App):
        self.engine = engine
        self.settings = settings
        self.app = app
        self._stalled_checked = 0.0

    @property
    def claim_limit(self) -> int:
        return self.settings.fetch_batch_sources * self.settings.fetch_lanes

    def claim(self, now: datetime, lease: datetime) -> list[ClaimedSource]:
        """Due sources, their next_fetch_at moved to `lease` (the batches' token: the same
        value goes into their jobs)."""
        with session_scope(self.engine) as session:
            return claim_due_sources(session, now, lease, self.claim_limit)

    async def tick(self) -> int:
        """Claim what is due and queue it; the number of sources queued."""
        SCHEDULER_LAST_TICK.set(time.time())
        queued = 0
        for _ in range(MAX_PASSES):
            now = datetime.now(UTC)
            lease = now + CLAIM_LEASE
            claimed = await asyncio.to_thread(self.claim, now, lease)
            if claimed:
                batches = form_batches(
                    claimed,
                    lease,
                    self.settings.fetch_lanes,
                    self.settings.fetch_batch_sources,
                )
                queued += await self.queue(batches)
            if len(claimed) < self.claim_limit:
                break
        await self.retry_stalled()
        if queued:
            log.info("sources queued", sources=queued)
        return queued

    async def queue(self, batches: list[Batch]) -> int:
        """One `poll_batch` job per batch, all of a pass in one statement (a round trip per
        job made deferring 1,000 batches take 25 s); each job locked by its lane."""
        jobs = [
            self.app.configure_task(
                POLL_BATCH,
                queue=FETCH_QUEUE,
                lock=f"lane:{batch.lane}",
                queueing_lock=f"batch:{batch.lane}:{batch.lease.isoformat()}:{batch.source_ids[0]}",
            ).make_new_job(
                source_ids=list[JSONValue](batch.source_ids), lease=batch.lease.isoformat()
            )
            for batch in batches
        ]
        try:
            await self.app.job_manager.batch_defer_jobs_async(jobs)
        except AlreadyEnqueued:  # these very batches are queued already
            return 0
        except Exception:
            log.exception("queueing batches failed; their sources are due again")
            await asyncio.to_thread(self._release, batches)
            return 0
        return sum(len(batch.source_ids) for batch in batches)

    def _release(self, batches: list[Batch]) -> None:
        with session_scope(self.engine) as session:
            for batch in batches:
                release_claims(session, batch.source_ids, batch.lease, datetime.now(UTC))

    async def retry_stalled(self) -> int:
        """Jobs whose worker stopped beating (killed, lost) run again, on another worker."""
        if time.monotonic() - self._stalled_checked < STALLED_CHECK_EVERY:
            return 0
        self._stalled_checked = time.monotonic()
        stalled = list(
            await self.app.job_manager.get_stalled_jobs(
                queue=FETCH_QUEUE, seconds_since_heartbeat=STALLED_AFTER_SECONDS
            )
        )
        for job in stalled:
            # The batch's sources: the polls its first run had not finished are downloaded
            # again (an operator, and the kill test, can tell those repeats apart).
            log.warning(
                "retrying a batch whose worker stopped",
                job_id=job.id,
                source_ids=job.task_kwargs.get("source_ids"),
            )
            await self.app.job_manager.retry_job(job)
        return len(stalled)

    async def prune(self) -> None:
        try:
            await asyncio.to_thread(prune, self.engine, self.settings)
        except Exception:
            log.exception("retention failed; tried again tomorrow")
