"""Polling one source: fetch politely, parse by kind, hand entries to the pipeline, record.

Network and parsing run concurrently across sources; writes go through one lock, one at a
time, which is what SQLite allows anyway and keeps the grouping stage single-threaded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlmodel import Session

from newswatch.config import Settings
from newswatch.fetch import http
from newswatch.fetch.entry_sink import EntrySink, IngestResult
from newswatch.fetch.feeds import parse_feed
from newswatch.fetch.http import Fetcher, FetchResult, URLCheck, backoff_delay
from newswatch.fetch.netguard import NetGuard
from newswatch.fetch.source_kinds import (
    BodyResult,
    Handler,
    PollContext,
    SourceKinds,
    body_head,
)
from newswatch.lifecycle import bind_to_parent
from newswatch.log import get_logger, log_enabled
from newswatch.prometheus_registry import FETCH_BYTES, FETCH_SECONDS, FETCHES
from newswatch.shared_types import FetchOutcome, ParsedEntry, SourceKind
from newswatch.store.articles import describe_rejections
from newswatch.store.columns import storable_text, utcnow
from newswatch.store.db import defer_insert
from newswatch.store.models import Fetch, Source, table_of
from newswatch.store.sources import SourceSnapshot, gone_state, record_state

FETCH_LOG = table_of(Fetch)

log = get_logger(__name__)
T = TypeVar("T")

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, text/html;q=0.5, */*;q=0.1"
)


async def handle_feed(
    poller: PollContext, source: SourceSnapshot, result: FetchResult
) -> BodyResult:
    parsed = await poller.run_cpu(
        parse_feed, result.body, url=result.final_url, content_type=result.content_type
    )
    if not parsed.is_feed:
        return BodyResult(error=parsed.error or "not a feed", detected_kind="other")
    return BodyResult(
        entries=list(parsed.entries), error=parsed.error, title=parsed.title, detected_kind="feed"
    )


def looks_like_feed(result: FetchResult) -> bool:
    head = body_head(result)
    return head.startswith(b"{") or any(m in head for m in (b"<rss", b"<feed", b"<rdf:rdf"))


class FeedReader:
    """The feed kind (RSS, Atom, JSON Feed): the reader every poller has."""

    kind = SourceKind.FEED

    def detects(self, result: FetchResult) -> bool:
        return looks_like_feed(result)

    def own_checks(self, source: SourceSnapshot) -> list[URLCheck]:
        return []

    read = staticmethod(handle_feed)


@dataclass
class PollOutcome:
    source: str
    url: str
    outcome: FetchOutcome
    status: int | None
    bytes: int
    duration: float
    entries: int = 0
    new: int = 0
    error: str | None = None
    queued: float = 0.0  # seconds waited for the host's turn


@dataclass
class _WriteJob:
    source_id: int
    entries: list[ParsedEntry]
    after: Callable[..., None] | None
    done: asyncio.Future[IngestResult]


class GroupWriter:
    """One writer for all polls: jobs waiting together are committed in one transaction.

    Under load many polls finish at once; committing them together costs one fsync instead
    of many, and keeps writes single-threaded (what SQLite allows and the grouper needs).
    Every write runs in the writer's own thread, never in the event loop: a write may wait
    (for a connection, for SQLite's lock) and the loop schedules fetches and answers health
    checks meanwhile.
    """

    def __init__(self, pipeline: EntrySink, max_batch: int = 64):
        self.pipeline = pipeline
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_WriteJob] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "newswatch-writer")

    async def write(
        self, source_id: int, entries: list[ParsedEntry], after: Callable[..., None]
    ) -> IngestResult:
        """Write a poll's entries; `after` runs in the transaction of the last ones, given
        the result of all. Beyond NEWSWATCH_WRITE_BATCH_ENTRIES they are written in several
        transactions, one after the other, and other polls' writes go in between: a huge
        feed neither holds the store's lock for minutes nor keeps every row in memory."""
        size = self.pipeline.settings.write_batch_entries
        batches = [entries[i : i + size] for i in range(0, len(entries), size)] or [[]]
        done = [await self._write(source_id, batch, None) for batch in batches[:-1]]

        def last(session: Session, source: Source, result: IngestResult) -> None:
            after(session, source, IngestResult.combine([*done, result]))

        done.append(await self._write(source_id, batches[-1], last))
        return IngestResult.combine(done)

    async def _write(
        self, source_id: int, entries: list[ParsedEntry], after: Callable[..., None] | None
    ) -> IngestResult:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        job = _WriteJob(source_id, entries, after, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return await job.done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            entries = len(batch[0].entries)
            limit = self.pipeline.settings.write_batch_entries
            while len(batch) < self.max_batch and entries < limit and not self._queue.empty():
                batch.append(self._queue.get_nowait())
                entries += len(batch[-1].entries)
            # A poll cancelled while its job waited (at stop) records nothing: not written.
            batch = [job for job in batch if not job.done.done()]
            if not batch:
                continue
            jobs = [(j.source_id, j.entries, j.after) for j in batch]
            try:
                results = await asyncio.get_running_loop().run_in_executor(
                    self._thread, self.pipeline.ingest_many, jobs
                )
            except Exception as exc:
                results = [exc] * len(batch)
            for job, result in zip(batch, results, strict=True):
                if job.done.done():
                    continue
                if isinstance(result, Exception):
                    job.done.set_exception(result)
                else:
                    job.done.set_result(result)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # A write in progress finishes (it is one transaction); none starts after it.
        await asyncio.to_thread(self._thread.shutdown, wait=True, cancel_futures=True)


def _cpu_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor | None:
    if workers <= 0:
        return None
    # spawn: forking a process that runs threads (the event loop's helpers) is unsafe.
    # Workers die with this process, even when it is killed (docs/decisions/0051).
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=bind_to_parent,
        initargs=(os.getpid(),),
    )


class Poller:
    def __init__(self, fetcher: Fetcher, pipeline: EntrySink, settings: Settings):
        self.fetcher = fetcher
        self.pipeline = pipeline
        self.settings = settings
        self.writer = GroupWriter(pipeline)
        # Parsing is CPU-bound Python: under load, worker processes run it beside the writer
        # (the GIL would serialise threads). They start on first need: a lone parse runs in a
        # thread, so small one-off runs do not pay for starting processes.
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._parsing = 0
        # Without worker processes, parsing runs in one thread, one parse at a time: lxml (and
        # trafilatura on it) aborted the process when three page extractions ran in threads
        # at once, and threads would not parse faster anyway (the GIL).
        self._cpu_thread = concurrent.futures.ThreadPoolExecutor(1, "newswatch-parse")
        # Kinds of source, each with the reader that turns a body into entries, and the
        # steps after reading (fetch/source_kinds.py). Pages, sitemaps and full text
        # register there (fetch/page_sources.py).
        self.kinds = SourceKinds([FeedReader()])

    async def run_cpu(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run CPU-bound `fn` in the worker processes (or a thread when there are none)."""
        call = functools.partial(fn, *args, **kwargs)
        if self._pool is None and self._parsing > 0:
            self._pool = _cpu_pool(self.settings.parse_workers)
        self._parsing += 1
        try:
            loop = asyncio.get_running_loop()
            if self._pool is None:
                return await loop.run_in_executor(self._cpu_thread, call)
            try:
                return await loop.run_in_executor(self._pool, call)
            except concurrent.futures.BrokenExecutor:
                # A worker died (killed, out of memory): start new ones and try once more.
                log.warning("parser workers restarted")
                self._pool = _cpu_pool(self.settings.parse_workers)
                if self._pool is None:
                    return await loop.run_in_executor(self._cpu_thread, call)
                return await loop.run_in_executor(self._pool, call)
        finally:
            self._parsing -= 1

    async def aclose(self) -> None:
        await self.writer.aclose()
        await asyncio.to_thread(self._cpu_thread.shutdown, wait=True, cancel_futures=True)
        if self._pool is not None:
            # Wait for the workers to exit: a process that returns leaves no child behind.
            await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
            self._pool = None

    async def __aenter__(self) -> Poller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _entries_to_write(
        self, source: SourceSnapshot, entries: list[ParsedEntry]
    ) -> tuple[list[ParsedEntry], int]:
        """At most NEWSWATCH_MAX_ENTRIES_PER_POLL entries not stored yet, newest first, and
        how many others wait (Pipeline.entries_for_poll: a read, beside the writer)."""
        cap = self.settings.max_entries_per_poll
        if len(entries) <= cap:
            return entries, 0
        return await asyncio.to_thread(self.pipeline.entries_for_poll, source.id, entries, cap)

    async def _record_store_error(self, recorder: FetchRecorder, exc: Exception) -> IngestResult:
        """The entries could not be written: record that on the source and in the fetch log
        (a write of its own), so the source shows the error and backs off."""
        recorder.store_failed(exc)
        log.error("storing a poll failed", source=recorder.snapshot.name, error=recorder.error)
        try:
            return await self.writer.write(recorder.snapshot.id, [], recorder.apply)
        except Exception:
            log.exception("recording a failed poll failed", source=recorder.snapshot.name)
            return IngestResult()

    def _handler_for(self, source: SourceSnapshot, result: FetchResult) -> Handler:
        return self.kinds.handler_for(source, result)

    async def poll(self, source: SourceSnapshot) -> PollOutcome:
        # Every fetch of this poll (feed, article pages, robots.txt) waits in this source's
        # turn at its host, so the host's sources are served round-robin.
        queue_key = http.QUEUE_KEY.set(f"source:{source.id}")
        try:
            result, body = await self._fetch_and_handle(source)
        finally:
            http.QUEUE_KEY.reset(queue_key)
        recorder = FetchRecorder(source, result, body, self.settings)
        try:
            entries, recorder.pending = await self._entries_to_write(source, body.entries)
            ingest = await self.writer.write(source.id, entries, recorder.apply)
        except Exception as exc:
            ingest = await self._record_store_error(recorder, exc)
        outcome = recorder.outcome
        count_fetch(
            "fetch",
            source.name,
            result,
            outcome,
            recorder.error,
            entries=len(body.entries),
            new_articles=ingest.new,
        )
        return PollOutcome(
            source=source.name,
            url=result.final_url,
            outcome=outcome,
            status=result.status,
            bytes=result.bytes_read,
            duration=result.duration,
            entries=len(body.entries),
            new=ingest.new,
            error=recorder.error,
            queued=result.queued,
        )

    async def _fetch_and_handle(self, source: SourceSnapshot) -> tuple[FetchResult, BodyResult]:
        checks = [own_guard(source), *self.kinds.url_checks(source)]
        result = await self.fetcher.get(
            source.url,
            etag=source.etag,
            last_modified=source.last_modified,
            accept=FEED_ACCEPT,
            check_url=checks,
        )
        body = BodyResult()
        if result.outcome == FetchOutcome.OK:
            try:
                body = await self._handler_for(source, result)(self, source, result)
            except Exception as exc:  # a bug in a handler must not stop the source
                log.exception("handler failed", source=source.name)
                body = BodyResult(error=f"internal error while parsing: {exc!r}")
        return result, body


def own_guard(source: SourceSnapshot) -> URLCheck:
    """The private-network guard on a source's own fetch. The operator chose the configured
    URL, so its host is trusted; every redirect to another host is a discovered URL and is
    checked at each hop. Only what the guard let through can become a permanent redirect's
    new `sources.url`. (Trusting the configured host, not the current URL, also stops a
    source that an earlier redirect moved to an internal address.)"""
    allow_private = bool(source.options.get("allow_private_networks"))
    return NetGuard(source.configured_url, allow_private=allow_private).check


def count_fetch(
    event: str,
    source_name: str,
    result: FetchResult,
    outcome: FetchOutcome,
    error: str | None,
    **extra: object,
) -> None:
    """Metrics and a log line for one fetch (a source's own, or an article page's)."""
    FETCHES.labels(source_name, outcome).inc()
    FETCH_SECONDS.observe(result.duration)
    FETCH_BYTES.inc(result.bytes_read)
    level = fetch_log_level(outcome, result.status)
    if not log_enabled(level):
        return
    log.log(
        level,
        event,
        source=source_name,
        url=result.final_url,
        status=result.status,
        outcome=outcome,
        bytes=result.bytes_read,
        duration_ms=round(result.duration * 1000),
        queued_ms=round(result.queued * 1000),
        error=error,
        **extra,
    )


def fetch_log_level(outcome: FetchOutcome, status: int | None) -> int:
    """INFO for a fetch that worked, WARNING for one that failed (so NEWSWATCH_LOG_LEVEL=WARNING
    shows problems only), ERROR for 410 Gone: the address is gone for good; someone has to act."""
    if status == 410:
        return logging.ERROR
    if outcome in (FetchOutcome.OK, FetchOutcome.NOT_MODIFIED):
        return logging.INFO
    return logging.WARNING


class FetchRecorder:
    """Writes the fetch log row and the source's new state, inside the ingest transaction."""

    def __init__(
        self, source: SourceSnapshot, result: FetchResult, body: BodyResult, settings: Settings
    ):
        self.snapshot = source
        self.result = result
        self.body = body
        self.settings = settings
        self.fetch_error = result.error or body.error  # the fetch's or the parser's
        self.error = self.fetch_error  # and the entries rejected, once written (apply)
        self.outcome = result.outcome
        if result.outcome == FetchOutcome.OK and body.error and not body.entries:
            self.outcome = FetchOutcome.PARSE_ERROR
        self.failed = self.outcome not in (FetchOutcome.OK, FetchOutcome.NOT_MODIFIED)
        self.stored = True  # False once the entries' write failed (store_failed)
        self.pending = 0  # entries left for later polls (a capped poll of a huge feed)

    def store_failed(self, exc: Exception) -> None:
        """The entries' write failed: what `apply` records instead (nothing stored)."""
        first_line = (str(exc).strip().splitlines() or [""])[0]
        # The store refused the poll's write (it is recorded alone, in a transaction of its own).
        self.outcome = FetchOutcome.STORE_ERROR
        self.fetch_error = f"the store refused the entries: {type(exc).__name__}: {first_line}"
        self.error = self.fetch_error
        self.failed = True
        self.stored = False

    def apply(self, session: Session, source: Source, ingest: IngestResult) -> None:
        now = utcnow()
        r = self.result
        for rejected in ingest.rejected:
            log.warning("entry rejected", source=source.name, entry=str(rejected))
        # Assigned, not appended to: a batch that failed runs this again, job by job.
        errors = (self.fetch_error, describe_rejections(ingest.rejected))
        self.error = storable_text("; ".join(e for e in errors if e)) or None
        rows = [_fetch_row(source, extra, now) for extra in self.body.extra_fetches]
        row = _fetch_row(source, r, now, outcome=self.outcome, error=self.error)
        row["entries"] = len(self.body.entries)
        row["new_articles"] = ingest.new
        # Written at commit with the rest of the batch's log rows: no ORM bookkeeping.
        defer_insert(session, FETCH_LOG, [*rows, row])
        if self.stored:  # hooks record what was stored (seen article URLs)
            for hook in self.body.after_ingest:
                hook(session, source, ingest)

        # The new state is written with the batch's other polls' (one executemany).
        state: dict[str, object] = {
            "last_fetch_at": now,
            "host_wait_seconds": round(r.queued, 3),
            "last_status": r.status,
            "last_outcome": self.outcome,
            "last_error": self.error,
        }
        if self.body.title:
            state["title"] = storable_text(self.body.title[:500])
        if self.body.detected_kind and source.kind == "auto":
            state["options"] = {**(source.options or {}), "detected_kind": self.body.detected_kind}
        if r.permanent_redirect:
            log.info(
                "permanent redirect", source=source.name, old=source.url, new=r.permanent_redirect
            )
            state["url"] = r.permanent_redirect
        gone = gone_state(source, r.status, self.settings.gone_pause_after, now)
        state.update(gone)
        if "paused_reason" in gone:
            log.error("source paused", source=source.name, reason=gone["paused_reason"])
        interval = self.snapshot.interval
        if not self.failed:
            state["consecutive_errors"] = 0
            state["last_success_at"] = now
            if r.outcome == FetchOutcome.OK:
                state["pending_entries"] = self.pending
                # Validators only once every entry is stored: else the unchanged feed would
                # answer 304 and the entries left would never come.
                state["etag"] = None if self.pending else r.etag
                state["last_modified"] = None if self.pending else r.last_modified
            state["next_fetch_at"] = now + interval
            record_state(session, source, state)
            return
        state["consecutive_errors"] = source.consecutive_errors + 1
        delay = backoff_delay(
            source.consecutive_errors + 1,
            self.settings.error_backoff_base,
            self.settings.error_backoff_max,
        )
        wait = max(interval.total_seconds(), delay, r.retry_after or 0.0)
        state["next_fetch_at"] = now + timedelta(seconds=wait)
        record_state(session, source, state)


def _fetch_row(
    source: Source,
    r: FetchResult,
    now: datetime,
    outcome: FetchOutcome | None = None,
    error: str | None = None,
) -> dict[str, object]:
    return {
        "source_id": source.id,
        "started_at": now,
        "url": r.final_url,
        "status": r.status,
        "outcome": outcome or r.outcome,
        "bytes": r.bytes_read,
        "duration_ms": round(r.duration * 1000),
        "entries": 0,
        "new_articles": 0,
        "error": error if error is not None else r.error,
    }
