"""`--role fetch`: runs `poll_batch` jobs: fetch, parse and store a batch of claimed sources.

The poll is the single-process mode's (`Poller`, `Fetcher`: conditional GETs, host gates,
parsing in worker processes, the fetch log and the source's state written with its entries)
with a storing-only sink (storing_sink.py): articles and sightings are stored, not grouped.
A job polls the sources still leased to its batch (store/claims.py), so a job run again
after its worker died polls only those its first run had not finished.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import Engine

from newswatch.config import FileConfig, Settings
from newswatch.fetch.http import Fetcher
from newswatch.fetch.poll import Poller, PollOutcome
from newswatch.log import get_logger
from newswatch.service import POLLER_PLUGINS, trigger_for
from newswatch.store.claims import leased_snapshots, set_next_fetch
from newswatch.store.db import session_scope
from newswatch.store.sources import SourceSnapshot
from newswatch.storing_sink import StoringSink

log = get_logger(__name__)


class FetchRuntime:
    """One fetcher and poller per worker process, shared by the jobs it runs at once."""

    def __init__(self, engine: Engine, config: FileConfig, settings: Settings):
        self.engine = engine
        self.settings = settings
        self.sink = StoringSink(engine, config, settings)
        self.fetcher: Fetcher | None = None
        self.poller: Poller | None = None

    async def __aenter__(self) -> FetchRuntime:
        self.fetcher = await Fetcher(self.settings).__aenter__()
        self.poller = Poller(self.fetcher, self.sink, self.settings)
        for register in POLLER_PLUGINS:
            register(self.poller)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.poller is not None:
            await self.poller.aclose()
        if self.fetcher is not None:
            await self.fetcher.__aexit__(None, None, None)

    def _leased(self, source_ids: list[int], lease: datetime) -> list[SourceSnapshot]:
        with session_scope(self.engine) as session:
            return leased_snapshots(session, source_ids, lease)

    async def poll_batch(self, source_ids: list[int], lease: datetime) -> list[PollOutcome]:
        assert self.poller is not None, "FetchRuntime used outside `async with`"
        sources = await asyncio.to_thread(self._leased, source_ids, lease)
        if len(sources) < len(source_ids):
            log.info(
                "batch: sources polled already or no longer leased",
                skipped=len(source_ids) - len(sources),
            )
        outcomes = await asyncio.gather(*(self._poll(s) for s in sources))
        done = [o for o in outcomes if o is not None]
        log.info(
            "batch polled",
            sources=len(done),
            new=sum(o.new for o in done),
            errors=sum(1 for o in done if o.error),
        )
        return done

    async def _poll(self, source: SourceSnapshot) -> PollOutcome | None:
        assert self.poller is not None
        try:
            outcome = await self.poller.poll(source)
        except Exception:  # a bug in one poll must not stop the batch; its lease runs out
            log.exception("poll failed", source_id=source.id)
            return None
        if source.cron and not outcome.error:
            await asyncio.to_thread(self._next_cron_run, source)
        return outcome

    def _next_cron_run(self, source: SourceSnapshot) -> None:
        """A cron source runs at its schedule's next time (the poll set now + interval)."""
        assert source.cron is not None
        when = trigger_for(source).get_next_fire_time(None, datetime.now(UTC))
        if when is not None:
            with session_scope(self.engine) as session:
                set_next_fetch(session, source.id, when)
