"""What the scheduler reads of one source just before it polls it."""

from __future__ import annotations

from sqlmodel import Session

from newswatch.store.models import Source
from newswatch.store.sources import SourceSnapshot


def enabled_snapshot(session: Session, source_id: int) -> SourceSnapshot | None:
    """The source as stored now, or None when it is gone, disabled or paused."""
    source = session.get(Source, source_id)
    if source is None or not source.enabled or source.paused_reason:
        return None
    return SourceSnapshot.of(source)
