"""A fake monotonic clock for tests: time moves only when the test moves it.

It implements `newswatch.clock.Clock`; `sleep` is the fake counterpart of `asyncio.sleep` for
the test's own coroutines (simulated requests, simulated triggers).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

# Loop turns after each step of time: enough for a release to travel through the gate, a
# simulated request and the next ask (each a few turns).
SETTLE_TURNS = 50


@dataclass(order=True)
class _Timer:
    when: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    def __init__(self, start: float = 1000.0):
        self._now = start
        self._timers: list[_Timer] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(when, next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self.call_at(self._now + seconds, lambda: future.done() or future.set_result(None))
        await future

    async def settle(self) -> None:
        for _ in range(SETTLE_TURNS):
            await asyncio.sleep(0)

    async def run_until(self, until: float) -> None:
        """Fire every timer due up to `until` in order, letting the loop settle after each."""
        await self.settle()
        while self.fire_next(until):
            await self.settle()
        self._now = max(self._now, until)

    def fire_next(self, until: float) -> bool:
        """Move to the next timer due by `until` and fire it, without letting anything run."""
        while self._timers and self._timers[0].when <= until:
            timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._now = max(self._now, timer.when)
                timer.callback()
                return True
        return False
