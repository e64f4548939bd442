"""Liveness and readiness: /healthz says the process answers, /readyz that it can work."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Engine

from newswatch.store.db import probe_writes, schema_head, stored_schema
from newswatch.store.health import ping

# The scheduler's resync job ticks every minute; three missed ticks mean it is stuck.
DEFAULT_TICK_MAX_AGE = 180.0
# The write probe runs at most this often (seconds); probes in between repeat its result.
WRITE_PROBE_EVERY = 30.0


class SchedulerStatus(Protocol):
    """What the service tells readiness about its scheduler (service.ServiceStatus; in the
    API's process, status_board.BoardStatus)."""

    @property
    def scheduler_running(self) -> bool: ...

    @property
    def last_tick(self) -> float | None:  # time.time() of the last tick
        ...


@dataclass
class Readiness:
    engine: Engine
    status: SchedulerStatus | None = None
    tick_max_age: float = DEFAULT_TICK_MAX_AGE
    timeout: float = 4.0  # seconds; below the Dockerfile HEALTHCHECK timeout (5 s)
    head: str | None = field(default_factory=schema_head)
    write_probe_every: float = WRITE_PROBE_EVERY
    clock: Callable[[], float] = time.monotonic
    _last_write_probe: tuple[float, dict[str, Any]] | None = field(default=None, repr=False)
    _probe_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, dict[str, Any]] = {"store": self._store()}
        checks["migrations"] = (
            self._migrations() if checks["store"]["ok"] else {"ok": False, "error": "no store"}
        )
        if checks["migrations"].get("current") is not None:  # a schema to write to
            checks["store_writes"] = self._writes()
        if self.status is not None:
            checks["scheduler"] = self._scheduler(self.status)
        failed = [name for name, result in checks.items() if not result["ok"]]
        body = {"status": "not ready" if failed else "ready", "checks": checks, "failed": failed}
        return not failed, body

    def timed_out(self, seconds: float) -> dict[str, Any]:
        error = {"ok": False, "error": f"the store did not answer within {seconds:g} s"}
        return {"status": "not ready", "checks": {"store": error}, "failed": ["store"]}

    def _store(self) -> dict[str, Any]:
        try:
            ping(self.engine)
        except Exception as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
        return {"ok": True}

    def _writes(self) -> dict[str, Any]:
        """Whether the store takes a write (read-only file, full disk): one committed write at
        most every `write_probe_every` seconds, the result repeated in between."""
        with self._probe_lock:
            now = self.clock()
            last = self._last_write_probe
            if last is not None and now - last[0] < self.write_probe_every:
                return last[1]
            try:
                result: dict[str, Any] = {"ok": True}
                if not probe_writes(self.engine):
                    result["busy"] = True  # another writer held the lock: busy, not broken
            except Exception as exc:
                first_line = (str(exc).splitlines() or [""])[0]
                result = {"ok": False, "error": f"the store takes no writes: {first_line}"}
            self._last_write_probe = (now, result)
            return result

    def _migrations(self) -> dict[str, Any]:
        try:
            current = stored_schema(self.engine)
        except Exception as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        result: dict[str, Any] = {"ok": current == self.head, "current": current, "head": self.head}
        if current != self.head:
            result["error"] = "database schema is not at the head revision (run migrations)"
        return result

    def _scheduler(self, status: SchedulerStatus) -> dict[str, Any]:
        age = None if status.last_tick is None else round(time.time() - status.last_tick, 1)
        result: dict[str, Any] = {
            "ok": True,
            "running": status.scheduler_running,
            "last_tick_age_seconds": age,
            "max_age_seconds": self.tick_max_age,
        }
        if not status.scheduler_running:
            result.update(ok=False, error="scheduler not running")
        elif age is None or age > self.tick_max_age:
            result.update(ok=False, error="scheduler has not ticked recently")
        return result
