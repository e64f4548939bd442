"""The scheduler's state, shared with the API's process: is it running, when did it last
tick. /readyz, served by the API's process, reports it (api/health.py).

The board is 16 bytes of a file with no name (unlinked at once), mapped into memory by the
service and, through the inherited descriptor, by its API process: a tick is a store to
memory, a probe a load — no system call, nothing to clean up after a crash. One process
writes; a reader takes two equal reads in a row, so it never sees half of a write.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import tempfile

_LAYOUT = struct.Struct("<dd")  # last tick (time.time(), NaN: never), running (1.0 / 0.0)


class StatusBoard:
    def __init__(self, fd: int, *, writable: bool):
        self.fd = fd
        access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        self._map = mmap.mmap(fd, _LAYOUT.size, access=access)

    @classmethod
    def create(cls) -> StatusBoard:
        """A new board (scheduler not running, no tick); its descriptor is inherited by the
        processes started with it in `pass_fds`."""
        with tempfile.TemporaryFile() as unnamed:
            fd = os.dup(unnamed.fileno())
        os.ftruncate(fd, _LAYOUT.size)
        board = cls(fd, writable=True)
        board.publish(running=False, last_tick=None)
        return board

    def publish(self, *, running: bool, last_tick: float | None) -> None:
        tick = math.nan if last_tick is None else last_tick
        _LAYOUT.pack_into(self._map, 0, tick, 1.0 if running else 0.0)

    def read(self) -> tuple[bool, float | None]:
        """(running, last tick)."""
        previous = self._map[: _LAYOUT.size]
        while (current := self._map[: _LAYOUT.size]) != previous:
            previous = current
        tick, running = _LAYOUT.unpack(current)
        return running == 1.0, None if math.isnan(tick) else tick

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)


class BoardStatus:
    """The scheduler status (api.health.SchedulerStatus) as the board shows it."""

    def __init__(self, board: StatusBoard):
        self.board = board

    @property
    def scheduler_running(self) -> bool:
        return self.board.read()[0]

    @property
    def last_tick(self) -> float | None:
        return self.board.read()[1]
