"""Kinds of source, and the steps that follow parsing: one Protocol each, one registry.

A poll fetches a source's URL, then hands the body to the *reader* of the source's kind
(`sources.kind`: feed, page, sitemap; `auto` asks each reader whether the body is its kind),
which turns it into entries. *Steps* then process those entries in order, before they are
stored (full text: fetch each new entry's page for its main text), as Miniflux's
reader/processor does after its parser. The feed reader is the poller's own
(fetch/poll.py); fetch/page_sources.py registers pages, sitemaps and full text.

A kind or step registered twice is an error (RegistryError): nothing replaces another's
handling silently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from sqlalchemy import Engine

from newswatch.errors import RegistryError
from newswatch.fetch.entry_sink import AfterIngest
from newswatch.fetch.http import Fetcher, FetchResult, URLCheck
from newswatch.shared_types import ParsedEntry, SourceKind
from newswatch.store.sources import SourceSnapshot

T = TypeVar("T")


@dataclass
class BodyResult:
    """What a reader made of a fetched body (and the steps after it)."""

    entries: list[ParsedEntry] = field(default_factory=list)
    error: str | None = None  # recorded on the fetch and the source
    title: str | None = None
    detected_kind: str | None = None
    # Extra fetches made for this poll (article pages): recorded in the fetch log too.
    extra_fetches: list[FetchResult] = field(default_factory=list)
    # Run in the ingest transaction after the entries are stored, with the poll's
    # IngestResult: record what was stored (seen article URLs).
    after_ingest: list[AfterIngest] = field(default_factory=list)


class HasEngine(Protocol):
    @property
    def engine(self) -> Engine: ...


class PollContext(Protocol):
    """What readers and steps use of the poller: its HTTP client, its parsing workers, and
    the store (for lookups of what was fetched before)."""

    @property
    def fetcher(self) -> Fetcher: ...

    @property
    def pipeline(self) -> HasEngine: ...

    async def run_cpu(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T: ...


class SourceReader(Protocol):
    """Turns the fetched body of a source of one kind into entries."""

    @property
    def kind(self) -> SourceKind: ...

    def detects(self, result: FetchResult) -> bool:
        """For `kind: auto`: does this body look like this kind?"""
        ...

    def own_checks(self, source: SourceSnapshot) -> list[URLCheck]:
        """Checks on the source's own fetch beyond the private-network guard (robots.txt)."""
        ...

    async def read(
        self, poller: PollContext, source: SourceSnapshot, result: FetchResult
    ) -> BodyResult: ...


class EntryStep(Protocol):
    """Processes the entries a reader found, before they are stored."""

    @property
    def name(self) -> str: ...

    @property
    def applies_to(self) -> frozenset[SourceKind]:
        """The kinds whose entries this step processes."""
        ...

    async def process(
        self, poller: PollContext, source: SourceSnapshot, body: BodyResult
    ) -> None: ...


def body_head(result: FetchResult) -> bytes:
    """The start of a body, lower case, without a byte-order mark or leading space: what
    readers look at to recognise their kind."""
    return result.body[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()


Handler = Callable[[PollContext, SourceSnapshot, FetchResult], Awaitable[BodyResult]]


class SourceKinds:
    """The registry of readers and steps of one poller."""

    def __init__(self, readers: Sequence[SourceReader] = ()):
        self._readers: dict[SourceKind, SourceReader] = {}
        self._steps: list[EntryStep] = []
        for reader in readers:
            self.register(reader)

    def register(self, reader: SourceReader) -> None:
        if reader.kind in self._readers:
            raise RegistryError(
                f"a reader for kind {str(reader.kind)!r} is registered already",
                where="source kinds",
            )
        self._readers[reader.kind] = reader

    def add_step(self, step: EntryStep) -> None:
        if any(known.name == step.name for known in self._steps):
            raise RegistryError(
                f"a step named {step.name!r} is registered already", where="source kinds"
            )
        self._steps.append(step)

    @property
    def kinds(self) -> list[SourceKind]:
        return list(self._readers)

    def kind_of(self, source: SourceSnapshot, result: FetchResult | None = None) -> SourceKind:
        """The kind a source's body is read as. `auto`: the first reader that recognises
        the body, else the kind found before, else a feed."""
        if source.kind != SourceKind.AUTO:
            return SourceKind(source.kind)
        if result is not None:
            for reader in self._readers.values():
                if reader.detects(result):
                    return reader.kind
        detected = source.options.get("detected_kind")
        return SourceKind(detected) if detected in self._readers else SourceKind.FEED

    def reader(self, kind: SourceKind) -> SourceReader:
        found = self._readers.get(kind)
        if found is None:
            raise RegistryError(f"no reader for kind {str(kind)!r}", where="source kinds")
        return found

    def url_checks(self, source: SourceSnapshot) -> list[URLCheck]:
        """Checks on the source's own fetch, by the kind it is (or was found to be)."""
        found = self._readers.get(self.kind_of(source))
        return found.own_checks(source) if found is not None else []

    def handler_for(self, source: SourceSnapshot, result: FetchResult) -> Handler:
        """Read the body by its kind, then run the steps that apply to that kind."""
        kind = self.kind_of(source, result)
        reader = self.reader(kind)
        steps = [step for step in self._steps if kind in step.applies_to]

        async def handle(
            poller: PollContext, source: SourceSnapshot, result: FetchResult
        ) -> BodyResult:
            body = await reader.read(poller, source, result)
            for step in steps:
                if not body.entries:
                    break
                await step.process(poller, source, body)
            return body

        return handle
