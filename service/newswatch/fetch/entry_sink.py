"""Where the poller hands its entries: what it needs of the pipeline, as a Protocol.

The pipeline is the layer above the fetch stage (docs/decisions/0131): the poller must not
import it. It is given an `EntrySink` instead, which `Pipeline` satisfies, and gets back an
`IngestResult`, defined here because the stage that reads it is the lowest one that does
(it holds store and grouping types, which a neutral module may not import). The choice:
docs/decisions/0134-poller-entry-sink-protocol.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from sqlalchemy import Engine
from sqlmodel import Session

from newswatch.config import Settings
from newswatch.grouping.changes import EventChange
from newswatch.shared_types import ParsedEntry
from newswatch.store.articles import RejectedEntry, StoredArticle
from newswatch.store.models import Source


@dataclass
class IngestResult:
    stored: list[StoredArticle] = field(default_factory=list)
    changes: list[EventChange] = field(default_factory=list)
    # Entries the store cannot hold (rejected alone; the others are stored).
    rejected: list[RejectedEntry] = field(default_factory=list)

    @property
    def new(self) -> int:
        return sum(1 for a in self.stored if a.is_new)

    @classmethod
    def combine(cls, results: list[IngestResult]) -> IngestResult:
        """The results of one poll's entries written in several batches, as one."""
        out = cls()
        offset = 0  # rejected entries are numbered among all the poll's entries
        for result in results:
            out.stored += result.stored
            out.changes += result.changes
            out.rejected += [replace(r, index=r.index + offset) for r in result.rejected]
            offset += len(result.stored) + len(result.rejected)
        return out

    @property
    def duplicates(self) -> int:
        return len(self.stored) - self.new


# Called inside the transaction after the entries are stored: the fetch stage records the
# fetch log and the source's state there.
AfterIngest = Callable[[Session, Source, IngestResult], None]
WriteJob = tuple[int, list[ParsedEntry], AfterIngest | None]


class EntrySink(Protocol):
    """What the poller uses of the pipeline (Pipeline satisfies it)."""

    @property
    def engine(self) -> Engine:
        """For the fetch stage's own lookups through store functions (pages seen before)."""
        ...

    @property
    def settings(self) -> Settings: ...

    def entries_for_poll(
        self, source_id: int, entries: list[ParsedEntry], cap: int
    ) -> tuple[list[ParsedEntry], int]:
        """What a poll writes of `entries` (at most `cap`), and how many wait for later."""
        ...

    def ingest_many(self, jobs: list[WriteJob]) -> list[IngestResult | Exception]:
        """Several polls' entries in one transaction; each job's result or its error."""
        ...
