"""Storing articles: exact duplicates are stored once, every carrying source is a sighting.

An entry is the same article as one already stored when it has the same canonical URL, the
same GUID (within its source, or anywhere when the GUID is a URL or URN), or the same content
hash. Writes use SQLAlchemy Core in bulk: several times faster than the ORM here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    SQLColumnExpression,
    TextClause,
    bindparam,
    func,
    insert,
    select,
    text,
)
from sqlmodel import Session, col
from sqlmodel import select as select_model

from newswatch.dedupe_keys import canonical_url, content_hash
from newswatch.shared_types import LanguageSource, ParsedEntry, SourceKind
from newswatch.store.columns import storable_text, utcnow
from newswatch.store.executemany import executemany_rows
from newswatch.store.models import Article, Sighting, Source, table_of
from newswatch.store.search import index_new_articles
from newswatch.store.upsert import insert_ignoring_conflicts

if TYPE_CHECKING:
    import sqlite3

ARTICLES = table_of(Article)
SIGHTINGS = table_of(Sighting)
# Made once: store/executemany compiles each statement object once.
INSERT_ARTICLES = insert(ARTICLES)
INSERT_SIGHTINGS = insert(SIGHTINGS)

# Content hashes of very short texts (a bare "Update" headline) would merge unrelated items.
MIN_HASHED_CHARS = 24
# IN (...) lists stay below SQLite's default variable limit.
LOOKUP_CHUNK = 500
# (source, GUID) pairs per lookup statement.
PAIR_CHUNK = 200


class DuplicateReason(StrEnum):
    """Why an entry is an article stored already (the label of newswatch_duplicates_total)."""

    URL = "canonical_url"
    GUID = "guid"
    HASH = "content_hash"


DUP_URL = DuplicateReason.URL
DUP_GUID = DuplicateReason.GUID
DUP_HASH = DuplicateReason.HASH


@dataclass
class StoredArticle:
    """An entry as stored: a new article, or a sighting of one already stored."""

    id: int
    source_id: int | None
    source_name: str | None
    url: str | None
    title: str | None
    summary: str | None
    text: str | None
    published: datetime | None
    first_seen: datetime
    language: str | None
    is_new: bool
    duplicate_reason: DuplicateReason | None = None  # why an entry was recognised as stored already
    # This source had not carried the article before (always true for new articles).
    new_sighting: bool = True


@dataclass
class _Keys:
    source: Source
    entry: ParsedEntry
    canonical: str | None
    guid: str | None
    hash: str
    hashable: bool


_TEXT_FIELDS = ("url", "guid", "title", "summary", "text", "author", "language", "canonical_url")
# Columns of bounded length that entries fill: Postgres refuses a longer value (SQLite would
# store it), so an entry with one is rejected before the batch's INSERT can fail.
_BOUNDED = {
    name: length
    for name in _TEXT_FIELDS
    if (length := getattr(ARTICLES.c[name].type, "length", None)) is not None
}
# Rejections named in a fetch log's error, each; the rest are counted.
REJECTIONS_SHOWN = 3


@dataclass(frozen=True)
class RejectedEntry:
    """An entry the store cannot hold, and why (for the fetch log and the source)."""

    index: int  # its position among the entries of its poll, from 0
    label: str  # its GUID, URL or title
    reason: str

    def __str__(self) -> str:
        return f"entry {self.index + 1} ({self.label}) rejected: {self.reason}"


def describe_rejections(rejected: list[RejectedEntry]) -> str | None:
    """One line for the fetch log: the first few rejections and how many more."""
    if not rejected:
        return None
    shown = "; ".join(str(r) for r in rejected[:REJECTIONS_SHOWN])
    more = len(rejected) - REJECTIONS_SHOWN
    return f"{shown}; and {more} more" if more > 0 else shown


def _storable(entry: ParsedEntry) -> ParsedEntry:
    """The entry with its text made storable (store.columns.storable_text)."""
    changes: dict[str, Any] = {}  # text fields only; replace() takes them as keywords
    for name in _TEXT_FIELDS:
        value = getattr(entry, name)
        if value:
            clean = storable_text(value)
            if clean is not value:
                changes[name] = clean
    return replace(entry, **changes) if changes else entry


def _rejection(entry: ParsedEntry) -> str | None:
    for name, length in _BOUNDED.items():
        value = getattr(entry, name)
        if value is not None and len(value) > length:
            return f"{name} has {len(value)} characters, the store holds at most {length}"
    return None


def admit_entries(entries: list[ParsedEntry]) -> tuple[list[ParsedEntry], list[RejectedEntry]]:
    """The entries as the store can hold them (text cleaned, see storable_text), and those
    it cannot hold even so, each with its reason: one bad entry must not fail its poll."""
    admitted: list[ParsedEntry] = []
    rejected: list[RejectedEntry] = []
    for index, entry in enumerate(entries):
        entry = _storable(entry)
        reason = _rejection(entry)
        if reason is None:
            admitted.append(entry)
        else:
            label = entry.guid or entry.url or repr((entry.title or "")[:80])
            rejected.append(RejectedEntry(index, label, reason))
    return admitted, rejected


def unstored_entries(session: Session, source: Source, entries: list[ParsedEntry]) -> list[int]:
    """The positions of the (admitted) `entries` that `source` has not carried yet: new
    articles, or stored ones without a sighting at `source`. What is left of a big feed."""
    keys = [_keys(source, e) for e in entries]
    known = _Known(session, keys)
    matched = {i: match[0] for i, k in enumerate(keys) if (match := known.match(k)) is not None}
    sighted: set[int] = set()
    ids = sorted(set(matched.values()))
    for start in range(0, len(ids), LOOKUP_CHUNK):
        query = select(SIGHTINGS.c.article_id).where(
            SIGHTINGS.c.source_id == source.id,
            SIGHTINGS.c.article_id.in_(ids[start : start + LOOKUP_CHUNK]),
        )
        sighted.update(session.execute(query).scalars())
    return [i for i in range(len(keys)) if matched.get(i) not in sighted]


def _global_guid(guid: str | None) -> bool:
    """GUIDs like "123" are unique only within one feed; URLs and URNs are unique anywhere."""
    return guid is not None and ":" in guid


def _keys(source: Source, entry: ParsedEntry) -> _Keys:
    url = entry.canonical_url or entry.url
    canonical = canonical_url(url) if url else None
    body = entry.text or entry.summary or ""
    basis = f"{entry.title or ''}\n{body}"
    return _Keys(
        source=source,
        entry=entry,
        canonical=canonical or None,
        guid=(entry.guid or "").strip() or None,
        hash=content_hash(entry.title or "", body),
        hashable=len(basis.strip()) >= MIN_HASHED_CHARS,
    )


def _chunks(values: list[str]) -> list[list[str]]:
    return [values[i : i + LOOKUP_CHUNK] for i in range(0, len(values), LOOKUP_CHUNK)]


@lru_cache(maxsize=4)
def _pairs_query(size: int) -> TextClause:
    """SELECT … WHERE (source_id = :s0 AND guid = :g0) OR … for `size` pairs, built once: a
    statement of SQLAlchemy expressions cost more to build and cache-key each batch than
    the query itself."""
    terms = " OR ".join(f"(source_id = :s{i} AND guid = :g{i})" for i in range(size))
    return text(f"SELECT source_id, guid, article_id FROM sightings WHERE {terms}")


def _lookup_source_guids(
    session: Session, pairs: set[tuple[int, str]]
) -> dict[tuple[int, str], int]:
    """Articles already sighted at a source under a GUID, for (source id, GUID) pairs.

    One OR of (source_id = ? AND guid = ?) terms: SQLite seeks the (source_id, guid) index
    once a pair. Two IN lists made it seek every source x GUID combination (a batch of 250
    entries from 200 sources: 50,000 seeks), and a row-value IN made it scan the table.
    Chunks are padded (repeating their last pair) to one of two sizes, so two statements
    serve every batch.
    """
    found: dict[tuple[int, str], int] = {}
    ordered = sorted(pairs)
    for start in range(0, len(ordered), PAIR_CHUNK):
        chunk = ordered[start : start + PAIR_CHUNK]
        size = PAIR_CHUNK if len(chunk) > PAIR_CHUNK // 8 else PAIR_CHUNK // 8
        chunk += [chunk[-1]] * (size - len(chunk))
        params: dict[str, int | str] = {
            f"s{i}": source_id for i, (source_id, _) in enumerate(chunk)
        }
        params.update({f"g{i}": guid for i, (_, guid) in enumerate(chunk)})
        for source_id, guid, article_id in session.execute(_pairs_query(size), params):
            found.setdefault((source_id, guid), article_id)
    return found


_KEY_COLUMNS = {"url": "canonical_url", "guid": "guid", "hash": "content_hash"}


@lru_cache(maxsize=8)
def _keys_query(kinds: tuple[str, ...]) -> TextClause:
    """SELECT kind, key, id of the articles with one of the given canonical URLs, global
    GUIDs or content hashes (each an expanding IN list named by its kind), a UNION ALL part
    a kind: built once for each set of kinds (a statement of SQLAlchemy expressions, built
    for every batch, cost more to build and cache-key than the query took)."""
    parts = [
        f"SELECT '{kind}' AS kind, {_KEY_COLUMNS[kind]} AS key, id FROM articles "
        f"WHERE {_KEY_COLUMNS[kind]} IN :{kind}"
        for kind in kinds
    ]
    return text(" UNION ALL ".join(parts)).bindparams(
        *(bindparam(kind, expanding=True) for kind in kinds)
    )


class _Known:
    """Keys already stored (looked up in bulk) plus those added earlier in this batch."""

    def __init__(self, session: Session, keys: list[_Keys]):
        urls = sorted({k.canonical for k in keys if k.canonical})
        guids = {k.guid for k in keys if k.guid}
        global_guids = sorted(g for g in guids if _global_guid(g))
        hashes = sorted({k.hash for k in keys if k.hashable})
        self.by_url: dict[str, int] = {}
        self.by_guid: dict[str, int] = {}
        self.by_hash: dict[str, int] = {}
        self.by_source_guid = _lookup_source_guids(
            session,
            {(k.source.id, k.guid) for k in keys if k.guid},  # type: ignore[misc]
        )
        # One round trip for the three keys; UNION ALL keeps each part on its index (an OR
        # of three IN lists makes SQLite scan the table).
        found = {"url": self.by_url, "guid": self.by_guid, "hash": self.by_hash}
        for i in range(0, max(len(urls), len(global_guids), len(hashes)), LOOKUP_CHUNK):
            part = slice(i, i + LOOKUP_CHUNK)
            values = {"url": urls[part], "guid": global_guids[part], "hash": hashes[part]}
            kinds = tuple(kind for kind in _KEY_COLUMNS if values[kind])
            if not kinds:
                continue
            params = {kind: values[kind] for kind in kinds}
            for kind, key, article_id in session.execute(_keys_query(kinds), params):
                found[kind].setdefault(key, article_id)

    def match(self, k: _Keys) -> tuple[int, DuplicateReason] | None:
        if k.canonical and k.canonical in self.by_url:
            return self.by_url[k.canonical], DUP_URL
        if k.guid and (k.source.id, k.guid) in self.by_source_guid:
            return self.by_source_guid[(k.source.id, k.guid)], DUP_GUID  # type: ignore[index]
        if k.guid and _global_guid(k.guid) and k.guid in self.by_guid:
            return self.by_guid[k.guid], DUP_GUID
        if k.hashable and k.hash in self.by_hash:
            return self.by_hash[k.hash], DUP_HASH
        return None

    def add(self, k: _Keys, article_id: int) -> None:
        if k.canonical:
            self.by_url.setdefault(k.canonical, article_id)
        if k.guid:
            self.by_source_guid.setdefault((k.source.id, k.guid), article_id)  # type: ignore[arg-type]
            if _global_guid(k.guid):
                self.by_guid.setdefault(k.guid, article_id)
        if k.hashable:
            self.by_hash.setdefault(k.hash, article_id)


def _article_row(k: _Keys, now: datetime) -> dict[str, object]:
    e = k.entry
    return {
        "canonical_url": k.canonical,
        "url": e.url,
        "guid": k.guid,
        "title": e.title,
        "summary": e.summary,
        "text": e.text,
        "author": e.author,
        "published": e.published,
        "first_seen": now,
        "language": e.language,
        "content_hash": k.hash,
        "source_id": k.source.id,
    }


def reserve_article_ids(session: Session, count: int) -> list[int]:
    """`count` ids for articles this transaction will insert, ascending.

    SQLite: max(id) + 1 onward, read under the write lock (taken with BEGIN IMMEDIATE unless
    the transaction already wrote, which took it), so no other writer can use them before
    our commit. Postgres: the id sequence's next values (never handed out twice).
    """
    if count <= 0:
        return []
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        query = text(
            "SELECT nextval(pg_get_serial_sequence('articles', 'id')) FROM generate_series(1, :n)"
        )
        return sorted(connection.execute(query, {"n": count}).scalars())
    sqlite_connection = cast("sqlite3.Connection", connection.connection.dbapi_connection)
    if not sqlite_connection.in_transaction:
        # pysqlite begins a transaction only before its first write; begin it ourselves,
        # taking the write lock at once.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    first = connection.execute(_MAX_ID).scalar_one() + 1
    return list(range(first, first + count))


_MAX_ID = text("SELECT coalesce(max(id), 0) FROM articles")


def _url_order(url: object) -> tuple[bool, str]:
    return url is None, str(url or "")


def _insert_articles_beside_others(
    session: Session, rows: list[dict[str, object]], positions: list[int]
) -> tuple[dict[int, int], dict[int, int]]:
    """Insert `rows` (the entries at `positions`), skipping those whose canonical URL another
    transaction stored meanwhile. Returns {position: new id} (the row gets its "id") and
    {position: id of the article stored by the other}.

    Rows go in canonical-URL order: two writers inserting overlapping URLs then wait for each
    other in the same order and never deadlock. Postgres numbers the inserted rows in VALUES
    order, so the ids of the rows without a canonical URL are theirs in order."""
    if not rows:
        return {}, {}
    order = sorted(
        range(len(rows)),
        key=lambda n: (rows[n]["canonical_url"] is None, str(rows[n]["canonical_url"] or "")),
    )
    statement = insert_ignoring_conflicts(session, ARTICLES, [ARTICLES.c.canonical_url])
    returned = session.execute(
        statement.returning(ARTICLES.c.id, ARTICLES.c.canonical_url), [rows[n] for n in order]
    ).all()
    by_url = {url: article_id for article_id, url in returned if url is not None}
    without_url = iter(sorted(article_id for article_id, url in returned if url is None))
    ids: dict[int, int] = {}
    skipped: dict[str, int] = {}  # canonical URL -> position
    for n in order:
        url = rows[n]["canonical_url"]
        article_id = next(without_url) if url is None else by_url.get(str(url))
        if article_id is None:
            skipped[str(url)] = positions[n]
            continue
        rows[n]["id"] = article_id
        ids[positions[n]] = article_id
    taken: dict[int, int] = {}
    if skipped:
        # Committed by the other writer (the INSERT waited for it): visible to this statement.
        query = select(ARTICLES.c.canonical_url, ARTICLES.c.id).where(
            ARTICLES.c.canonical_url.in_(sorted(skipped))
        )
        for url, article_id in session.execute(query):
            taken[skipped[url]] = article_id
    return ids, taken


def _insert_sightings(
    session: Session, rows: list[dict[str, object]], new_articles: set[int]
) -> set[tuple[int, int]]:
    """Insert the sightings not stored yet; returns the (article, source) pairs inserted.
    Those of articles new in this transaction cannot be stored yet: one executemany INSERT;
    the others skip the stored ones (ON CONFLICT DO NOTHING, RETURNING what went in)."""
    unique = {(cast(int, r["article_id"]), cast(int, r["source_id"])): r for r in reversed(rows)}
    fresh = [row for key, row in unique.items() if key[0] in new_articles]
    executemany_rows(session, INSERT_SIGHTINGS, fresh)
    inserted = {key for key in unique if key[0] in new_articles}
    known = [row for key, row in unique.items() if key[0] not in new_articles]
    if known:
        statement = insert_ignoring_conflicts(
            session, SIGHTINGS, [SIGHTINGS.c.article_id, SIGHTINGS.c.source_id]
        ).returning(SIGHTINGS.c.article_id, SIGHTINGS.c.source_id)
        inserted.update((row[0], row[1]) for row in session.execute(statement, known))
    return inserted


# The language to store for a new article's entry and how it is known (a LanguageSource),
# or (None, None).
LanguageOf = Callable[[ParsedEntry], tuple[str | None, str | None]]

# Given the new articles of a batch (ids reserved, not inserted yet), the values of further
# article columns for each, in the same order: written with the article's INSERT.
Assign = Callable[[list["StoredArticle"]], list[dict[str, object]]]


def store_batch(
    session: Session,
    items: list[tuple[Source, ParsedEntry]],
    now: datetime | None = None,
    assign: Assign | None = None,
    language_of: LanguageOf | None = None,
    concurrent: bool = False,
) -> list[StoredArticle]:
    """Store entries of one or several sources in a few statements; one StoredArticle per
    item, in order. Runs in the caller's transaction (no commit). The entries are those
    admit_entries admitted.

    With `assign`, the new articles' ids are reserved first and `assign` is called with
    them before the INSERT, so that what it returns (the grouping stage's event columns) is
    written in the same statement rather than by an UPDATE of each row afterwards.

    With `language_of`, each new article's language is what it returns for the entry: called
    once per new article, never for an entry found to be stored already.

    With `concurrent` (the scaled mode's fetch workers, which store beside each other), an
    article another transaction inserted meanwhile under the same canonical URL is not an
    error: the INSERT skips it (ON CONFLICT DO NOTHING, rows in canonical-URL order so two
    writers wait for each other in one order, never in a cycle) and the entry becomes a
    sighting of that article (docs/decisions/0162-fetch-workers-store-beside-each-other.md)."""
    if concurrent and assign is not None:
        raise ValueError("a concurrent write stores articles without grouping them")
    if any(source.id is None for source, _ in items):
        raise ValueError("sources must be stored before their entries")
    now = now or utcnow()
    keys = [_keys(source, e) for source, e in items]
    known = _Known(session, keys)
    # First decide, for each entry, "new" or "the same as X"; X may be an entry earlier in
    # this batch, whose id is known only after the bulk insert.
    matches: list[tuple[int, DuplicateReason] | None] = []
    # entry index -> (index of the new one, reason)
    earlier: dict[int, tuple[int, DuplicateReason]] = {}
    new_rows: list[dict[str, object]] = []
    new_index: list[int] = []
    for i, k in enumerate(keys):
        match = known.match(k)
        if match is not None and match[0] < 0:  # placeholder: an entry of this batch
            earlier[i] = (-match[0] - 1, match[1])
            matches.append(None)
            continue
        matches.append(match)
        if match is None:
            known.add(k, -i - 1)
            how: str | None = LanguageSource.DECLARED if k.entry.language else None
            if language_of is not None:
                language, how = language_of(k.entry)
                k.entry = replace(k.entry, language=language)
            new_rows.append(_article_row(k, now) | {"language_source": how})
            new_index.append(i)
    taken: dict[int, int] = {}  # entry index -> the article another writer stored first
    if concurrent:
        ids, taken = _insert_articles_beside_others(session, new_rows, new_index)
        new_rows = [row for row in new_rows if "id" in row]
        new_index = [i for i in new_index if i in ids]
    else:
        # Ids reserved, then one executemany INSERT (after `assign`, with its columns): no
        # RETURNING, which SQLAlchemy runs as batches of multi-row VALUES built row by row.
        reserved = reserve_article_ids(session, len(new_rows))
        for row, article_id in zip(new_rows, reserved, strict=True):
            row["id"] = article_id
        ids = dict(zip(new_index, reserved, strict=True))
    results: list[StoredArticle] = []
    sightings: list[dict[str, object]] = []
    for i, k in enumerate(keys):
        if i in ids:
            article_id, is_new, reason = ids[i], True, None
        elif i in taken:
            article_id, is_new, reason = taken[i], False, DUP_URL
        elif i in earlier:
            first, reason = earlier[i]
            article_id, is_new = ids.get(first) or taken[first], False
        else:
            (article_id, reason), is_new = matches[i], False  # type: ignore[misc]
        sightings.append(
            {
                "article_id": article_id,
                "source_id": k.source.id,
                "guid": k.guid,
                "entry_url": k.entry.url,
                "first_seen": now,
            }
        )
        e = k.entry
        results.append(
            StoredArticle(
                id=article_id,
                source_id=k.source.id,
                source_name=k.source.name,
                url=e.url,
                title=e.title,
                summary=e.summary,
                text=e.text,
                published=e.published,
                first_seen=now,
                language=e.language,
                is_new=is_new,
                duplicate_reason=reason,
            )
        )
    if assign is not None and new_rows:
        extra = assign([results[i] for i in new_index])
        for row, columns in zip(new_rows, extra, strict=True):
            row.update(columns)
    if not concurrent:
        executemany_rows(session, INSERT_ARTICLES, new_rows)
    index_new_articles(session, new_rows)  # the full-text index, in the same transaction
    inserted = _insert_sightings(session, sightings, set(ids.values()))
    for article in results:
        article.new_sighting = (article.id, article.source_id) in inserted
    return results


def ensure_sources(session: Session, names: list[str], origin: str = "replay") -> dict[str, Source]:
    """ensure_source for several names, in their order: one query finds the stored ones, one
    flush adds the missing ones (in order)."""
    wanted = list(dict.fromkeys(names))
    found: dict[str, Source] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        query = select_model(Source).where(col(Source.name).in_(chunk))
        found.update({s.name: s for s in session.exec(query)})
    missing = [_new_source(name, None, origin) for name in wanted if name not in found]
    if missing:
        session.add_all(missing)
        session.flush()
        found.update({s.name: s for s in missing})
    return {name: found[name] for name in wanted}


def _new_source(name: str, url: str | None, origin: str) -> Source:
    location = url or f"replay:{name}"
    return Source(
        name=name,
        url=location,
        configured_url=location,
        origin=origin,
        enabled=False,
        kind=SourceKind.REPLAY,
    )


def ensure_source(
    session: Session, name: str, url: str | None = None, origin: str = "replay"
) -> Source:
    """The source called `name`, created (disabled, never polled) if missing.

    Replayed and imported articles name their outlet; it becomes a source so that sightings
    and distinct-source counts work the same as for fetched articles.
    """
    source = session.exec(select_model(Source).where(Source.name == name)).first()
    if source is None:
        source = _new_source(name, url, origin)
        session.add(source)
        session.flush()
    return source


def query_articles(
    session: Session,
    since: datetime | None = None,
    source: str | None = None,
    limit: int = 100,
    by: str = "seen",
) -> list[tuple[Article, list[str]]]:
    """Newest first by the clock `by` ("seen" or "published"), `since` on that clock; with the
    names of the sources that carried each article."""
    when: SQLColumnExpression[datetime] = col(Article.first_seen)
    if by == "published":
        when = func.coalesce(Article.published, Article.first_seen)
    query = select_model(Article).order_by(when.desc(), col(Article.id).desc()).limit(limit)
    if since is not None:
        query = query.where(when >= since)
    if source is not None:
        carried = select_model(Sighting.article_id).join(Source).where(Source.name == source)
        query = query.where(col(Article.id).in_(carried))
    articles = session.exec(query).all()
    names: dict[int, list[str]] = {}
    ids = [a.id for a in articles]
    if ids:
        rows = session.exec(
            select_model(Sighting.article_id, Source.name)
            .join(Source)
            .where(col(Sighting.article_id).in_(ids))
        ).all()
        for article_id, name in rows:
            names.setdefault(article_id, []).append(name)
    return [(a, sorted(names.get(a.id, []))) for a in articles]  # type: ignore[arg-type]
