"""Liveness and readiness: /healthz says the process answers, /readyz that it can work."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Engine, text

from newswatch.store.db import current_revision, head_revision

# The scheduler's resync job ticks every minute; three missed ticks mean it is stuck.
DEFAULT_TICK_MAX_AGE = 180.0


class SchedulerStatus(Protocol):
    """What the service tells readiness about its scheduler (service.ServiceStatus)."""

    scheduler_running: bool
    last_tick: float | None  # time.time() of the last tick


@dataclass
class Readiness:
    engine: Engine
    status: SchedulerStatus | None = None
    tick_max_age: float = DEFAULT_TICK_MAX_AGE
    timeout: float = 4.0  # seconds; below the Dockerfile HEALTHCHECK timeout (5 s)
    head: str | None = field(default_factory=head_revision)

    def check(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, dict[str, Any]] = {"store": self._store()}
        checks["migrations"] = (
            self._migrations() if checks["store"]["ok"] else {"ok": False, "error": "no store"}
        )
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
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
        return {"ok": True}

    def _migrations(self) -> dict[str, Any]:
        try:
            current = current_revision(self.engine)
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
