"""Liveness under `newswatch run`: each event loop of the service publishes a heartbeat, and
/healthz fails when one of them stopped beating.

The heartbeats are float64 slots (CLOCK_MONOTONIC seconds, one clock for every process on Linux)
in a file with no name, mapped by the service (ingestion's loop), its API process and its
probe front (api/front.py), which all inherit the descriptor. A beat is a store to memory and
a probe a load: no system call, nothing on disk, nothing left behind after SIGKILL. Each slot
has one writer; a reader takes two equal reads in a row, so it never sees half of a write.

Standard library only: the probe front imports this and must start small.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

# The loops whose heartbeats /healthz checks, by slot.
INGESTION = "ingestion"
API = "api"
LOOPS = (INGESTION, API)
_LAYOUT = struct.Struct(f"<{len(LOOPS)}d")

BEAT_SECONDS = 1.0
# A loop that has not beaten for this long is stuck: /healthz answers 503 and names it. Well
# above the loop's lag under full load (p99 under 0.3 s measured) and a full collection's
# pause, well below the 30-s lock waits of issue 20.
DEFAULT_MAX_AGE_SECONDS = 20.0


class Heartbeats:
    def __init__(self, fd: int):
        self.fd = fd
        self._map = mmap.mmap(fd, _LAYOUT.size, access=mmap.ACCESS_WRITE)

    @classmethod
    def create(cls) -> Heartbeats:
        """New slots, each stamped now: a process started with them has `max_age` seconds to
        beat for the first time. The descriptor is inherited by the processes started with it
        in `pass_fds`."""
        with tempfile.TemporaryFile() as unnamed:
            fd = os.dup(unnamed.fileno())
        os.ftruncate(fd, _LAYOUT.size)
        beats = cls(fd)
        _LAYOUT.pack_into(beats._map, 0, *([time.monotonic()] * len(LOOPS)))
        return beats

    def beat(self, loop: str, now: float | None = None) -> None:
        offset = LOOPS.index(loop) * 8
        struct.pack_into("<d", self._map, offset, time.monotonic() if now is None else now)

    def last_beats(self) -> dict[str, float | None]:
        previous = self._map[: _LAYOUT.size]
        while (current := self._map[: _LAYOUT.size]) != previous:
            previous = current
        values = _LAYOUT.unpack(current)
        return {loop: None if math.isnan(v) else v for loop, v in zip(LOOPS, values, strict=True)}

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)


@dataclass(frozen=True)
class Verdict:
    alive: bool
    body: bytes  # the JSON answer of /healthz

    @property
    def status(self) -> int:
        return 200 if self.alive else 503


ALIVE = Verdict(True, b'{"status":"ok"}')


def verdict(
    last_beats: dict[str, float | None], now: float, max_age: float = DEFAULT_MAX_AGE_SECONDS
) -> Verdict:
    """Alive when every loop beat within `max_age` seconds; otherwise 503 naming the loops
    that did not."""
    stuck = {
        loop: None if beat is None else round(now - beat, 1)
        for loop, beat in last_beats.items()
        if beat is None or now - beat > max_age
    }
    if not stuck:
        return ALIVE
    body = {"status": "stuck", "stuck": sorted(stuck), "seconds_since_beat": stuck}
    return Verdict(False, json.dumps(body, separators=(",", ":")).encode())


def checker(
    beats: Heartbeats,
    max_age: float = DEFAULT_MAX_AGE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[], Verdict]:
    return lambda: verdict(beats.last_beats(), clock(), max_age)


async def beat_forever(beats: Heartbeats, loop: str, every: float = BEAT_SECONDS) -> None:
    """Run on the event loop whose liveness it shows: a loop that is stuck stops beating."""
    import asyncio

    while True:
        beats.beat(loop)
        await asyncio.sleep(every)
