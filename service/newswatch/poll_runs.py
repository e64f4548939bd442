"""At most one poll per source at a time, and no pile-up behind a busy host.

The scheduler's job for a source only asks for a poll and returns at once. While a source's
poll is under way (most often waiting for its host's turn, when a host has more sources than
its politeness gap allows) the source is not polled twice: an ask that comes meanwhile is
remembered, and the source is polled once more as soon as the poll under way ends. However
many asks came, that is one poll (APScheduler's coalescing, kept across the wait); none is
dropped, and a job is never "skipped: maximum number of running instances reached".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


class PollRuns:
    def __init__(
        self, poll: Callable[[int], Awaitable[bool]], tasks: set[asyncio.Task[Any]] | None = None
    ):
        """`poll(source_id)` polls once and says whether an ask that came meanwhile may run
        now (False after an error: the source's back-off decides its next poll). `tasks`
        holds the polls under way (the service waits for them at shutdown)."""
        self._poll = poll
        self.tasks: set[asyncio.Task[Any]] = set() if tasks is None else tasks
        self._asked_again: dict[int, bool] = {}  # sources whose poll is under way

    def ask(self, source_id: int) -> None:
        """Poll the source now, or once more when its poll under way ends."""
        if source_id in self._asked_again:
            self._asked_again[source_id] = True
            return
        self._asked_again[source_id] = False
        task = asyncio.create_task(self._run(source_id), name=f"poll-source-{source_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def under_way(self, source_id: int) -> bool:
        return source_id in self._asked_again

    async def _run(self, source_id: int) -> None:
        try:
            while await self._poll(source_id) and self._asked_again[source_id]:
                self._asked_again[source_id] = False
        finally:
            del self._asked_again[source_id]
