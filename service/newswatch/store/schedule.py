"""What the scheduler reads of one source just before it polls it."""

from __future__ import annotations

from sqlmodel import Session

from newswatch.store.models import Source
from newswatch.store.sources import SourceSnapshot


def enabled_snapshot(session: Session, source_id: int) -> SourceSnapshot | None:
    """The source as stored now, or None when it is gone or disabled."""
    source = session.get(Source, source_id)
    return SourceSnapshot.of(source) if source is not None and source.enabled else None
