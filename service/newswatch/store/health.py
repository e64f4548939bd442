"""Readiness probes of the store (api/health.py): does it answer at all."""

from __future__ import annotations

from sqlalchemy import Engine, text


def ping(engine: Engine) -> None:
    """One round trip to the store; raises what the driver raised when it does not answer."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
