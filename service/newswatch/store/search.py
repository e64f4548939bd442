"""Full-text search over articles in the alert rules' query language (alerts/query.py).

One parser, two engines: a query is parsed by `alerts.query.parse` and its tree is translated
into an SQLite FTS5 MATCH expression or a Postgres tsquery. Both indexes hold the same thing:
each article's words as the alert matcher sees them (`alerts.query.words`: lowercased,
accents folded), stemmed in Python by the article's language (store/stemming.py: `en¦elect`
for "elections" in English; words of other languages as they are), so a query finds the same
articles on both engines (docs/decisions/0191-full-text-search.md, 0205). A query's title and
text words are rewritten the same way, each into its stem in every language or itself
(`index_tree`): "elections" finds "election" in English, "Wahl" finds "Wahlen" in German.
The alert rules match words as they are (decision 0206).

- SQLite: the FTS5 table `article_search` (title, text, lang), rowid = articles.id.
- Postgres: the table `article_search` (article_id, document tsvector) with a GIN index;
  title words carry weight A, text words B, the language C.

The store writes an article's index row with the article (store_batch); a database trigger
drops it when the article is deleted or its title, text or language change (then
`index_articles` writes it again). Fields title/text/lang are matched in the index; source
names are few, so `source:` is evaluated on them with the alert matcher's own `evaluate` and
becomes a condition on the sightings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    TextClause,
    and_,
    bindparam,
    column,
    false,
    literal_column,
    not_,
    or_,
    select,
    table,
    text,
    true,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnClause, TableClause

from newswatch.alerts.query import (
    And,
    Document,
    Node,
    Not,
    Or,
    Phrase,
    QueryError,
    Term,
    evaluate,
    parse,
    words,
)
from newswatch.store.executemany import executemany
from newswatch.store.models import Article, Sighting, Source, table_of
from newswatch.store.stemming import (
    CODES,
    MAX_WORD_CHARS,
    TAG,
    index_tokens,
    stem_language,
    stem_word,
)

__all__ = ["QueryError", "SearchQuery", "compile_query"]

ARTICLES = table_of(Article)
SIGHTINGS = table_of(Sighting)
SOURCES = table_of(Source)
TABLE = "article_search"

# Postgres keeps at most 16,383 positions in a tsvector: words after that cannot take part in
# phrases. Both engines index the first words of a text up to these limits, so that they
# agree; a news text is a few thousand words at most. (Words are cut to MAX_WORD_CHARS.)
MAX_TITLE_WORDS = 1_000
MAX_TEXT_WORDS = 15_000
# Weights of the Postgres document's parts (tsquery restricts a word to them).
WEIGHTS = {"title": "A", "text": "B", "lang": "C"}
INDEXED_FIELDS = frozenset(WEIGHTS)
# The fields whose words are stemmed (the language code and source names are not).
STEMMED_FIELDS = frozenset(("title", "text"))
# Articles indexed per statement when (re)indexing in bulk.
INDEX_BATCH = 500


# --- documents ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchDocument:
    """The tokens of an article as the index holds them, per field: title and text words
    stemmed by the article's language (or not, see store/stemming.py), the language's words
    as they are."""

    title: list[str]
    text: list[str]
    lang: list[str]


def document_of(title: str | None, body: str | None, language: str | None) -> SearchDocument:
    """What the index holds for an article; `body` is its text, or its summary without one."""
    code = stem_language(language)
    return SearchDocument(
        title=index_tokens(words(title or "")[:MAX_TITLE_WORDS], code),
        text=index_tokens(words(body or "")[:MAX_TEXT_WORDS], code),
        lang=words(language or ""),
    )


def tsvector_literal(doc: SearchDocument) -> str:
    """The document as a Postgres tsvector literal: each word with its positions and its
    field's weight. A gap of one position between fields keeps phrases inside a field."""
    positions: dict[str, list[str]] = {}
    at = 0
    for name in ("title", "text", "lang"):
        weight = WEIGHTS[name]
        for word in getattr(doc, name):
            at += 1
            positions.setdefault(word, []).append(f"{at}{weight}")
        at += 1
    return " ".join(f"{_quote(word)}:{','.join(p)}" for word, p in positions.items())


def _quote(word: str) -> str:
    """A lexeme in tsvector/tsquery syntax (folded words hold no quote; escaped anyway)."""
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def _is_postgres(conn: Connection | Session) -> bool:
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    return bind.dialect.name == "postgresql"


_SQLITE_INSERT = text(
    f"INSERT INTO {TABLE} (rowid, title, text, lang) VALUES (:id, :title, :text, :lang)"
)
_POSTGRES_INSERT = text(
    f"INSERT INTO {TABLE} (article_id, document) VALUES (:id, CAST(:document AS tsvector))"
)


def _params(article_id: int, doc: SearchDocument, postgres: bool) -> dict[str, object]:
    """The index row of an article as the INSERT of its engine takes it."""
    if postgres:
        return {"id": article_id, "document": tsvector_literal(doc)}
    return {
        "id": article_id,
        "title": " ".join(doc.title),
        "text": " ".join(doc.text),
        "lang": " ".join(doc.lang),
    }


_SQLITE_KEYS = ("id", "title", "text", "lang")
_POSTGRES_KEYS = ("id", "document")


def _insert_index_rows(
    conn: Connection | Session, postgres: bool, params: list[dict[str, object]]
) -> int:
    if not params:
        return 0
    if isinstance(conn, Session):  # (the ingest path) one executemany, compiled once
        keys = _POSTGRES_KEYS if postgres else _SQLITE_KEYS
        statement = _POSTGRES_INSERT if postgres else _SQLITE_INSERT
        executemany(conn, statement, keys, [tuple(p[k] for k in keys) for p in params])
    else:
        conn.execute(_POSTGRES_INSERT if postgres else _SQLITE_INSERT, params)
    return len(params)


def _index_rows(
    conn: Connection | Session,
    rows: Iterable[tuple[int, str | None, str | None, str | None]],
) -> int:
    """Write the index rows of (id, title, text-or-summary, language) articles."""
    postgres = _is_postgres(conn)
    params = [
        _params(article_id, document_of(title, body, language), postgres)
        for article_id, title, body, language in rows
    ]
    return _insert_index_rows(conn, postgres, params)


def index_new_articles(session: Session, rows: Sequence[dict[str, object]]) -> None:
    """Index articles just inserted, given their rows as inserted (id, title, text, summary,
    language). Runs in the caller's transaction."""
    _index_rows(
        session,
        (
            (
                int(r["id"]),  # type: ignore[call-overload]
                _str(r.get("title")),
                _str(r.get("text")) or _str(r.get("summary")),
                _str(r.get("language")),
            )
            for r in rows
        ),
    )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _indexed_among(conn: Connection | Session, postgres: bool, ids: list[int]) -> set[int]:
    key = "article_id" if postgres else "rowid"
    query = text(f"SELECT {key} FROM {TABLE} WHERE {key} IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    return set(conn.execute(query, {"ids": ids}).scalars())


def _delete_index_rows(conn: Connection | Session, postgres: bool, ids: list[int]) -> None:
    key = "article_id" if postgres else "rowid"
    query = text(f"DELETE FROM {TABLE} WHERE {key} IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    conn.execute(query, {"ids": ids})


_SOURCE_COLUMNS = (
    ARTICLES.c.id,
    ARTICLES.c.title,
    ARTICLES.c.text,
    ARTICLES.c.summary,
    ARTICLES.c.language,
)


def index_articles(
    conn: Connection | Session,
    ids: Sequence[int] | None = None,
    *,
    rebuild: bool = False,
) -> int:
    """(Re)index the articles `ids`; or, with None, every article not indexed yet (after an
    update of an article's words, or for articles written without the store: raw SQL, an
    ORM add), every article with `rebuild`. One pass over the articles in id order,
    INDEX_BATCH at a time. Returns how many were indexed. (Migrations write the index with
    a frozen copy of their own: store/migrations/frozen_search.py.)"""
    postgres = _is_postgres(conn)
    if rebuild:
        conn.execute(text(f"DELETE FROM {TABLE}"))
    a = ARTICLES.c
    total = 0
    if ids is not None:
        for start in range(0, len(ids), INDEX_BATCH):
            chunk = list(ids[start : start + INDEX_BATCH])
            _delete_index_rows(conn, postgres, chunk)
            found = conn.execute(select(*_SOURCE_COLUMNS).where(a.id.in_(chunk))).all()
            rows = ((r[0], r[1], r[2] or r[3], r[4]) for r in found)
            total += _index_rows(conn, rows)
        return total
    after = 0
    while True:
        query = select(*_SOURCE_COLUMNS).where(a.id > after).order_by(a.id).limit(INDEX_BATCH)
        found = conn.execute(query).all()
        if not found:
            return total
        done = _indexed_among(conn, postgres, [r[0] for r in found])
        rows = ((r[0], r[1], r[2] or r[3], r[4]) for r in found if r[0] not in done)
        total += _index_rows(conn, rows)
        after = found[-1][0]


# --- queries ------------------------------------------------------------------------------
def index_tree(node: Node) -> Node:
    """The query as the index answers it: each title/text word or phrase becomes the OR of
    its stem in every language (tagged, see store/stemming.py) and of itself (for articles
    of languages without a stemmer). A prefix `p*` matches stems starting with `p` or with
    p's own stem ("happy*": `en¦happi…`). `lang:` and `source:` parts stay as they are."""
    if isinstance(node, Term):
        if not set(node.fields) <= STEMMED_FIELDS:
            return node
        word = node.word[:MAX_WORD_CHARS]  # cut as the documents' words are, then stemmed
        found = [word]
        for code in CODES:
            found.append(stem_word(word, code))
            if node.prefix:  # the prefix as typed, among that language's stems too
                found.append(code + TAG + word)
        return Alternatives(tuple(Term(node.fields, w, node.prefix) for w in dict.fromkeys(found)))
    if isinstance(node, Phrase):
        if not set(node.fields) <= STEMMED_FIELDS:
            return node
        cut = tuple(w[:MAX_WORD_CHARS] for w in node.words)
        variants = [cut] + [tuple(stem_word(w, code) for w in cut) for code in CODES]
        return Alternatives(tuple(Phrase(node.fields, v) for v in variants))
    if isinstance(node, Not):
        return Not(index_tree(node.child))
    if isinstance(node, And):
        return And(tuple(index_tree(c) for c in node.children))
    return Or(tuple(index_tree(c) for c in node.children))


def _fts_field(node: Term | Phrase) -> bool:
    return set(node.fields) <= INDEXED_FIELDS


def _in_index(node: Node) -> bool:
    """Whether `node` can be one index expression that matches only documents with some
    word (a NOT needs a positive part beside it: FTS5 has only `a NOT b`)."""
    if isinstance(node, Term | Phrase):
        return _fts_field(node)
    if isinstance(node, Not):
        return False
    if isinstance(node, Or):
        return all(_in_index(c) for c in node.children)
    positive = [c for c in node.children if not isinstance(c, Not)]
    negative = [c.child for c in node.children if isinstance(c, Not)]
    return bool(positive) and all(_in_index(c) for c in positive + negative)


def _fts5(node: Node) -> str:
    """The FTS5 MATCH expression of an `_in_index` node."""
    if isinstance(node, Term | Phrase):
        columns = " ".join(node.fields)
        if isinstance(node, Term):
            body = '"' + node.word + '"' + (" *" if node.prefix else "")
        else:
            body = '"' + " ".join(node.words) + '"'
        return f"{{{columns}}} : {body}"
    if isinstance(node, Or):
        return "(" + " OR ".join(_fts5(c) for c in node.children) + ")"
    assert isinstance(node, And)
    positive = [_fts5(c) for c in node.children if not isinstance(c, Not)]
    negative = [_fts5(c.child) for c in node.children if isinstance(c, Not)]
    out = "(" + " AND ".join(positive) + ")"
    if negative:
        out += " NOT (" + " OR ".join(negative) + ")"
    return out


def _tsquery(node: Node) -> str:
    """The tsquery of an `_in_index` node (the same shape as its FTS5 expression)."""
    if isinstance(node, Term | Phrase):
        weights = "".join(WEIGHTS[f] for f in node.fields)
        if isinstance(node, Term):
            star = "*" if node.prefix else ""
            return f"{_quote(node.word)}:{star}{weights}"
        parts = [f"{_quote(w)}:{weights}" for w in node.words]
        return "(" + " <-> ".join(parts) + ")"
    if isinstance(node, Or):
        return "(" + " | ".join(_tsquery(c) for c in node.children) + ")"
    assert isinstance(node, And)
    parts = [_tsquery(c) for c in node.children if not isinstance(c, Not)]
    parts += ["!" + _tsquery(c.child) for c in node.children if isinstance(c, Not)]
    return "(" + " & ".join(parts) + ")"


def _driver(node: Node) -> tuple[Node | None, list[Node]]:
    """Split a query into the part the index answers in its own order (newest article id
    first, stopping at a page) and the parts left to check on each row it yields: the whole
    query when it is one index expression; an AND's index parts and the rest; else no
    driver (the articles are scanned by id with the whole query as a condition)."""
    if _in_index(node):
        return node, []
    if not isinstance(node, And):
        return None, [node]
    positive = [c for c in node.children if not isinstance(c, Not) and _in_index(c)]
    if not positive:
        return None, [node]
    negative = [c for c in node.children if isinstance(c, Not) and _in_index(c.child)]
    rest = [c for c in node.children if c not in positive and c not in negative]
    parts = positive + negative
    return (parts[0] if len(parts) == 1 else And(tuple(parts))), rest


@dataclass(frozen=True)
class SearchQuery:
    """A parsed query, ready to become conditions on `articles` for an engine; `tree` is
    its form for the stemmed index (`index_tree` of the parsed query)."""

    text: str
    tree: Node

    def condition(self, session: Session) -> ColumnElement[bool]:
        """A condition on articles.id: the articles the query matches."""
        return _Translator(session).condition(self.tree)


def compile_query(query: str) -> SearchQuery:
    """The query parsed by the alert rules' parser, in its form for the index: QueryError
    (with its column) when it does not parse."""
    return SearchQuery(query, index_tree(parse(query)))


# The index as SQLAlchemy sees it: a key column naming the article (FTS5's rowid).
_SQLITE_INDEX = table(TABLE, column("rowid", Integer))
_POSTGRES_INDEX = table(TABLE, column("article_id", Integer))


class _Translator:
    def __init__(self, session: Session):
        self.session = session
        self.postgres = _is_postgres(session)
        self._sources: list[tuple[int, Document]] | None = None
        self._params = 0

    @property
    def index(self) -> TableClause:
        return _POSTGRES_INDEX if self.postgres else _SQLITE_INDEX

    @property
    def index_key(self) -> ColumnClause[int]:
        return self.index.c.article_id if self.postgres else self.index.c.rowid

    def index_expression(self, node: Node) -> TextClause:
        """The condition on the index's row of an `_in_index` node."""
        self._params += 1
        name = f"search_{self._params}"
        if self.postgres:
            return text(f"{TABLE}.document @@ CAST(:{name} AS tsquery)").bindparams(
                bindparam(name, _tsquery(node))
            )
        return text(f"{TABLE} MATCH :{name}").bindparams(bindparam(name, _fts5(node)))

    def condition(self, node: Node) -> ColumnElement[bool]:
        if _in_index(node):
            found = select(self.index_key).where(self.index_expression(node)).correlate(None)
            return ARTICLES.c.id.in_(found)
        if isinstance(node, Term | Phrase):
            return self.source_match(node)
        if isinstance(node, Not):
            return not_(self.condition(node.child))
        parts = [self.condition(c) for c in node.children]
        return and_(*parts) if isinstance(node, And) else or_(*parts)

    def source_match(self, node: Term | Phrase) -> ColumnElement[bool]:
        """`source:` parts: the sources whose names match, evaluated as the alert matcher
        does; the articles any of them carried."""
        if self._sources is None:
            rows = self.session.execute(select(SOURCES.c.id, SOURCES.c.name)).all()
            self._sources = [(r[0], Document.of(source=r[1])) for r in rows]
        ids = [i for i, doc in self._sources if evaluate(node, doc)]
        if not ids:
            return false()
        carried = select(SIGHTINGS.c.article_id).where(SIGHTINGS.c.source_id.in_(ids))
        return ARTICLES.c.id.in_(carried)


def matching_articles(session: Session, query: str | SearchQuery) -> ColumnElement[bool]:
    """A condition on `articles` (articles.id IN …) selecting the articles `query` matches;
    QueryError when the query does not parse."""
    compiled = compile_query(query) if isinstance(query, str) else query
    return compiled.condition(session)


def matching_event_ids(session: Session, query: str | SearchQuery) -> Select[Any]:
    """A subquery of the ids of events having an article `query` matches, for
    `events.id IN (…)`: the events page's `q` filter.

    Articles name their event in articles.event_id (the event an article was put in; a
    merged-away event's articles are moved to the event it was merged into). QueryError when
    the query does not parse. Example::

        query = query.where(EVENTS.c.id.in_(matching_event_ids(session, q)))
    """
    a = ARTICLES.c
    return select(a.event_id).where(a.event_id.is_not(None), matching_articles(session, query))


# --- listing ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArticleFilter:
    """The filters of the articles list and its exports."""

    q: SearchQuery | None = None
    since: datetime | None = None
    source_id: int | None = None
    event_id: int | None = None
    language: str | None = None


@dataclass(frozen=True)
class ArticleRow:
    """An article as lists and exports show it, with its source's name."""

    id: int
    title: str | None
    url: str | None
    summary: str | None
    published: datetime | None
    first_seen: datetime
    language: str | None
    language_source: str | None
    source_id: int | None
    source_name: str | None
    event_id: int | None
    duplicate_of: int | None


@dataclass(frozen=True)
class Position:
    """Where a page ended: the last row's first_seen and id."""

    first_seen: datetime
    id: int


def _filters(filters: ArticleFilter) -> list[ColumnElement[bool]]:
    a = ARTICLES.c
    parts: list[ColumnElement[bool]] = []
    if filters.since is not None:
        parts.append(a.first_seen >= filters.since)
    if filters.source_id is not None:
        carried = select(SIGHTINGS.c.article_id).where(SIGHTINGS.c.source_id == filters.source_id)
        parts.append(a.id.in_(carried))
    if filters.event_id is not None:
        parts.append(a.event_id == filters.event_id)
    if filters.language is not None:
        parts.append(a.language == filters.language)
    return parts


_ROW_COLUMNS = (
    ARTICLES.c.id,
    ARTICLES.c.title,
    ARTICLES.c.url,
    ARTICLES.c.summary,
    ARTICLES.c.published,
    ARTICLES.c.first_seen,
    ARTICLES.c.language,
    ARTICLES.c.language_source,
    ARTICLES.c.source_id,
    SOURCES.c.name.label("source_name"),
    ARTICLES.c.event_id,
    ARTICLES.c.duplicate_of,
)


# The statistics ANALYZE keeps of the index's lexemes: the most common ones and their shares
# of documents (the array's last three values are the minimum, the maximum and the share of
# empty documents).
_LEXEME_STATS = text(
    "SELECT CAST(CAST(most_common_elems AS text) AS text[]), most_common_elem_freqs FROM pg_stats "
    f"WHERE schemaname = current_schema() AND tablename = '{TABLE}' AND attname = 'document'"
)
_INDEXED_COUNT = text(f"SELECT reltuples FROM pg_class WHERE oid = CAST('{TABLE}' AS regclass)")
# Postgres' share for a lexeme outside the common ones (DEFAULT_TS_MATCH_SEL), at most half
# the least common one's.
_RARE_SHARE = 0.005


class Alternatives(Or):
    """The forms one query word stands for (its stem in each language, itself): an OR to
    the engines, but one word to the estimate of its matches."""


@dataclass(frozen=True)
class _LexemeShares:
    common: dict[str, float]
    rare: float

    def of(self, node: Node) -> float:
        """The estimated share of documents `node` matches, as Postgres estimates a lexeme
        (its share if common, else `rare`), combined: a word's forms by the most common
        (the others are mostly absent: summing 35 "rare" guesses made a name in 224 of
        1,000,000 articles look like 160,000), OR by sum, AND by product, NOT ignored."""
        if isinstance(node, Term):
            if node.prefix:
                found = sum(f for w, f in self.common.items() if w.startswith(node.word))
                return min(1.0, max(found, self.rare))
            return self.common.get(node.word, self.rare)
        if isinstance(node, Phrase):
            return min(self.common.get(w, self.rare) for w in node.words)
        if isinstance(node, Alternatives):
            return max(self.of(c) for c in node.children)
        if isinstance(node, Or):
            return min(1.0, sum(self.of(c) for c in node.children))
        share = 1.0
        for child in node.children if isinstance(node, And) else ():
            if not isinstance(child, Not):
                share *= self.of(child)
        return share


def _lexeme_shares(session: Session) -> _LexemeShares | None:
    row = session.execute(_LEXEME_STATS).first()
    if row is None or not row[0] or not row[1]:
        return None
    words, freqs = list(row[0]), list(row[1])
    least = freqs[len(words)] if len(freqs) > len(words) else min(freqs[: len(words)])
    return _LexemeShares(dict(zip(words, freqs, strict=False)), min(_RARE_SHARE, least / 2))


def _scan_in_order(session: Session, driver: Node, page: int) -> bool:
    """Postgres: whether to read the index in id order, testing each document, rather than
    collect every match through the GIN index and sort them. Both cost about one document
    check a row: in order ~ page / share of matching articles rows, collecting ~ matches.
    So in order pays when matches² > page × articles. The planner makes this choice itself
    but misjudges a document check (it reads a de-TOASTed tsvector): it walked 25,000 rows
    for a word in 0.3 % of articles (220 ms where collecting took 13). The matches are
    estimated from the planner's own lexeme statistics (_LexemeShares), with a query word's
    35 forms counted as one word."""
    total = float(session.execute(_INDEXED_COUNT).scalar_one() or 0)
    shares = _lexeme_shares(session)
    if total <= 0 or shares is None:  # never analysed: no estimate to go by
        return True
    matches = shares.of(driver) * total
    return matches * matches > page * total


@dataclass(frozen=True)
class _Plan:
    """The list's statement, and whether it must run without parallel workers."""

    query: Select[Any]
    serial: bool = False


def _articles_plan(
    session: Session, filters: ArticleFilter, after: Position | None, page: int
) -> _Plan:
    """The articles matching `filters` in list order, after `after` (keyset paging).

    Without a text query: newest first seen first. With one: newest stored (highest id)
    first, which is first-seen order but for articles stored in the same instant; the index
    then yields matches in that order and stops at the page's end instead of collecting
    every match to sort it (a word in one article of ten, over a million: 100,000 rows).

    On Postgres, when the matches are collected and sorted (few: at most about
    √(page × articles), see _scan_in_order), the statement runs without parallel workers:
    starting them costs more than the work they share (decision 0204).

    `page` is the number of rows the caller reads: a query the index answers alone takes no
    more than that from it (decision 0208), so it has no default that could cut a page short."""
    a = ARTICLES.c
    sources = ARTICLES.outerjoin(SOURCES, SOURCES.c.id == a.source_id)
    conditions: list[ColumnElement[bool] | TextClause] = [*_filters(filters)]
    if filters.q is None:
        query = select(*_ROW_COLUMNS).select_from(sources).where(and_(true(), *conditions))
        if after is not None:
            at, ident = after.first_seen, after.id
            query = query.where(or_(a.first_seen < at, and_(a.first_seen == at, a.id < ident)))
        return _Plan(query.order_by(a.first_seen.desc(), a.id.desc()))
    translate = _Translator(session)
    driver, rest = _driver(filters.q.tree)
    if driver is not None and not conditions and not rest:
        return _page_first(session, translate, driver, after, page)
    conditions += [translate.condition(node) for node in rest]
    serial = False
    if driver is None:
        key: ColumnElement[int] = a.id
        query = select(*_ROW_COLUMNS).select_from(sources)
    else:
        key = translate.index_key
        joined = translate.index.join(sources, a.id == translate.index_key)
        if translate.postgres and not _scan_in_order(session, driver, page):
            key = key + literal_column("0")  # the same order, which the index's cannot give
            serial = True
        query = select(*_ROW_COLUMNS).select_from(joined)
        conditions.append(translate.index_expression(driver))
    if after is not None:
        conditions.append(translate.index_key < after.id if driver is not None else a.id < after.id)
    return _Plan(query.where(and_(true(), *conditions)).order_by(key.desc()), serial)


def _page_first(
    session: Session, translate: _Translator, driver: Node, after: Position | None, page: int
) -> _Plan:
    """A query the index answers alone (no filter, no part left to check on articles): the
    page's ids are taken from the index first, in order and cut at the page, and only they
    are joined to their articles and sources. Postgres plans the join for the page's rows,
    not for its guess of the matches (a word's 35 forms look like 16 % of the articles,
    decision 0205), so a name in a few hundred articles joins a few dozen (decision 0208)."""
    a = ARTICLES.c
    key = translate.index_key
    order: ColumnElement[int] = key
    serial = translate.postgres and not _scan_in_order(session, driver, page)
    if serial:
        order = key + literal_column("0")  # collected and sorted, as in _articles_plan
    ids = select(key.label("id")).where(translate.index_expression(driver))
    if after is not None:
        ids = ids.where(key < after.id)
    matches = ids.order_by(order.desc()).limit(page).subquery("page")
    joined = matches.join(ARTICLES, a.id == matches.c.id).outerjoin(
        SOURCES, SOURCES.c.id == a.source_id
    )
    return _Plan(select(*_ROW_COLUMNS).select_from(joined).order_by(a.id.desc()), serial)


# A collected plan's settings, for its statement only: no parallel workers (decision 0204);
# the few matches (the store has just judged them few) joined to their articles one by one:
# the planner's estimate for a word's 35 forms (decision 0205) is 160,000 rows for a name in
# 224 articles, for which it would hash or merge-join every article (530 ms at 1,000,000
# articles, where the matches themselves take 15); and no JIT compilation: that estimate put
# the statement's cost over jit_optimize_above_cost, and compiling it took 100 ms on an idle
# machine, 0.9-1.2 s at load 17, for 50 ms of work (decision 0208).
_COLLECTED_SETTINGS = {
    "max_parallel_workers_per_gather": "0",
    "enable_seqscan": "off",
    "enable_hashjoin": "off",
    "enable_mergejoin": "off",
    "jit": "off",
}


def _set_local(session: Session, settings: dict[str, str]) -> None:
    """Set `settings` for the transaction (set_config(..., true)), in one statement."""
    calls = ", ".join(f"set_config(:n{i}, :v{i}, true)" for i in range(len(settings)))
    params: dict[str, str] = {}
    for i, (name, value) in enumerate(settings.items()):
        params |= {f"n{i}": name, f"v{i}": value}
    session.execute(text(f"SELECT {calls}"), params)


def _current(session: Session, names: Iterable[str]) -> dict[str, str]:
    """The transaction's values of the settings `names`, in one statement."""
    names = list(names)
    reads = ", ".join(f"current_setting(:n{i})" for i in range(len(names)))
    row = session.execute(text(f"SELECT {reads}"), {f"n{i}": n for i, n in enumerate(names)})
    return dict(zip(names, row.one(), strict=True))


def _aborted(session: Session) -> bool:
    """Whether the server aborted the session's transaction (Postgres: in error)."""
    raw = session.connection().connection.dbapi_connection
    status = getattr(getattr(raw, "info", None), "transaction_status", None)
    return getattr(status, "name", "") == "INERROR"


def _rows(session: Session, plan: _Plan, limit: int) -> list[ArticleRow]:
    """Run `plan`'s statement for `limit` rows; a collected (serial) plan with the settings
    above for that statement only (the transaction's own are put back after it)."""
    query = plan.query.limit(limit)
    if not plan.serial:
        return [ArticleRow(**r._mapping) for r in session.execute(query)]
    before = _current(session, _COLLECTED_SETTINGS)
    _set_local(session, _COLLECTED_SETTINGS)
    try:
        rows = [ArticleRow(**r._mapping) for r in session.execute(query)]
    except DBAPIError:
        # A statement the server failed aborts the transaction and its LOCAL settings end with
        # it; restoring them would raise "current transaction is aborted" over the original
        # error (a statement timeout must reach the API as OperationalError: 503, not 500).
        # A client-side error leaves the transaction usable: put the settings back.
        if not _aborted(session):
            _set_local(session, before)
        raise
    except BaseException:
        _set_local(session, before)
        raise
    _set_local(session, before)
    return rows


def list_articles(
    session: Session, filters: ArticleFilter, limit: int, after: Position | None = None
) -> tuple[list[ArticleRow], bool]:
    """A page of the articles matching `filters` (see _articles_plan), and whether more
    follow."""
    rows = _rows(session, _articles_plan(session, filters, after, limit + 1), limit + 1)
    return rows[:limit], len(rows) > limit


EXPORT_CHUNK = 1_000


def iter_articles(session: Session, filters: ArticleFilter) -> Iterator[ArticleRow]:
    """Every article matching `filters`, in list order, read EXPORT_CHUNK at a time (keyset
    paging: memory stays flat however many match)."""
    after: Position | None = None
    while True:
        plan = _articles_plan(session, filters, after, EXPORT_CHUNK)
        rows = _rows(session, plan, EXPORT_CHUNK)
        yield from rows
        if len(rows) < EXPORT_CHUNK:
            return
        after = Position(rows[-1].first_seen, rows[-1].id)
