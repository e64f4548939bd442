"""A feed parsed in a parse worker, with what the store derives from a new article's text
(its language, its full-text index tokens) derived there too (docs/decisions/0227).

The store derives these once per new article, in the process that writes (the main
process, one thread): with many new articles it is that process, not the parse workers, that
bounds a poll. Only the store knows which entries are new; what a parse worker can know is
which entries the source did not carry at its previous poll, from a few hashes the poller
keeps per source (`entry_keys`). It derives the text of those only, with the same functions
the store calls (`language_of`, `document_of`); the store uses what an entry carries while
the entry's fields are still what it was derived from, and derives it itself otherwise.
"""

from __future__ import annotations

import hashlib
import multiprocessing

from newswatch.fetch.feeds import ParsedFeed, parse_feed
from newswatch.fetch.language import language_of
from newswatch.shared_types import ParsedEntry, PreparedText
from newswatch.store.stemming import document_of

KEY_BYTES = 8  # an entry's key: 64 bits of BLAKE2b, one collision in ~10^19 pairs


def entry_key(entry: ParsedEntry) -> bytes:
    """What identifies an entry between two polls of its source: its GUID, URL and title
    hashed (a process-independent hash: workers and the poller compare them)."""
    identity = "\x00".join((entry.guid or "", entry.url or "", entry.title or ""))
    return hashlib.blake2b(identity.encode("utf-8", "replace"), digest_size=KEY_BYTES).digest()


def prepare_text(entry: ParsedEntry) -> PreparedText:
    """The entry's language (`language_of`) and index tokens (`document_of`, body = text,
    else summary, as store/search.py indexes it), with the fields they come from."""
    language, how = language_of(entry)
    document = document_of(entry.title, entry.text or entry.summary, language)
    return PreparedText(
        basis=entry.text_basis(),
        language=language,
        language_source=how,
        title=" ".join(document.title),
        text=" ".join(document.text),
    )


def _in_worker_process() -> bool:
    # In the main process (a lone parse runs in a thread there) preparing would move
    # nothing off the writer's process and would cost entries that are not new.
    return multiprocessing.parent_process() is not None


def parse_feed_prepared(
    body: bytes,
    *,
    url: str = "",
    content_type: str | None = None,
    previous: bytes | None = None,
    prepare: bool = True,
) -> tuple[ParsedFeed, bytes]:
    """`parse_feed`, each entry whose key is not in `previous` (the keys of the source's
    previous poll, KEY_BYTES each; None: no previous poll known) prepared (`prepare_text`)
    when `prepare` and this is a worker process; and the keys of this poll's entries."""
    parsed = parse_feed(body, url=url, content_type=content_type)
    keys = [entry_key(entry) for entry in parsed.entries]
    if prepare and _in_worker_process():
        seen = (
            {previous[i : i + KEY_BYTES] for i in range(0, len(previous), KEY_BYTES)}
            if previous
            else set()
        )
        for entry, key in zip(parsed.entries, keys, strict=True):
            if key not in seen:
                entry.prepared = prepare_text(entry)
    return parsed, b"".join(keys)
