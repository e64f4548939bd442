"""Full-text search (store/search.py): the alert rules' query language on SQLite FTS5 and
Postgres, over the same articles, with the same answers on both engines and as the alert
matcher's evaluation of the query over the stemmed words (store/stemming.py)."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, delete, func, literal, select, text, update
from sqlalchemy.exc import OperationalError

from newswatch.alerts.query import Document, QueryError, evaluate, parse
from newswatch.shared_types import ParsedEntry
from newswatch.store import search
from newswatch.store.articles import ensure_source, store_batch
from newswatch.store.db import make_engine, session_scope, upgrade
from newswatch.store.migrations import frozen_search
from newswatch.store.models import Article, table_of
from newswatch.store.search import (
    ArticleFilter,
    Position,
    compile_query,
    index_articles,
    iter_articles,
    list_articles,
    matching_articles,
    matching_event_ids,
)
from tests.conftest import SHARED_DATA, empty_database, shared_corpus

ARTICLES = table_of(Article)
START = datetime(2026, 3, 1, tzinfo=UTC)
CORPUS_ARTICLES = 300

# Written for the accents, scripts, fields and languages the corpus (English) lacks.
HANDWRITTEN = [
    ("Reuters World", "Kyïv talks resume", "Délégations met in Kyiv on Monday.", "en"),
    ("Le Monde", "Élection présidentielle", "Le président a été réélu à Paris.", "fr"),
    (
        "Der Spiegel",
        "Sanktionen gegen Pjöngjang",
        "Die Bundesregierung beschließt Sanktionen.",
        "de",
    ),
    ("РИА Новости", "Ёлка в Москве", "В Москве установили новогоднюю ёлку.", "ru"),
    ("El País", "Ataque en Madrid", "El ministro de defensa habló del ataque.", "es"),
    ("Reuters World", "U.S. sanctions on DPRK", "The defence minister spoke of North Korea.", "en"),
    (
        "BBC News",
        "North Korea missile test",
        "Pyongyang fired a missile; sport events cancelled.",
        "en-GB",
    ),
    ("BBC Sport", "Cup final report", "The sport pages: football, tennis and the cup final.", "en"),
    (
        "Reuters World",
        "al-Assad meets envoy",
        "Talks with al-Assad on the border_crossing issue.",
        None,
    ),
    ("Kyodo", "Markets", "Tokyo stocks rose 2.5% as the yen fell.", "ja"),
]

# Stemming by the article's language (decision 0205): (source, title, text, language).
STEMMING = [
    ("AP", "Election results", "The state election was held on Sunday.", "en"),
    ("AP", "Ban on imports", "The government will ban imports of steel.", "en"),
    ("Le Figaro", "Les élections municipales", "Une élection serrée à Lyon.", "fr"),
    ("Die Zeit", "Die Wahlen in Bayern", "Nach der Wahl bildet sich eine Regierung.", "de"),
    ("Коммерсантъ", "Выборы в Госдуму", "Итоги голосования на выборах.", "ru"),
    ("Narnia Times", "Elections in Narnia", "The elections were free.", None),
    ("Kyodo", "Elections in Japan", "The elections were held.", "ja"),
    ("AP", "Long " + "z" * 250 + "ing", "A word past the 200 characters indexed.", "en"),
]
LONG = "Long " + "z" * 250 + "ing"

QUERIES = [
    "kyiv",
    "kyïv",
    "KYIV",
    "sanktionen OR sanctions",
    "sanction*",
    "sanct*",
    '"north korea"',
    '"korea north"',
    '"defence minister" AND (DPRK OR "North Korea")',
    '(Belousov OR "defence minister") AND (DPRK OR "North Korea") NOT sport*',
    "missile -sport",
    "NOT sport",
    "NOT (sport OR football) AND cup",
    "title:sanction*",
    "text:sanctions",
    "title:north title:korea",
    "lang:en",
    "lang:gb",
    "lang:ru ёлка",
    "елка",
    "source:reuters",
    'source:"bbc news"',
    "source:bbc -source:sport",
    "source:nosuchoutlet OR election",
    "election OR élection",
    "u.s.",
    "al-assad",
    "border_crossing",
    "2",
    "2.5",
    "points AND record",
    "record NOT (points OR victory)",
    "(police OR killed) AND NOT (shot OR earthquake)",
    "earthquake OR quake*",
    '"the first half"',
    "title:record text:points",
    "champion* OR title:award*",
    "hansbrough OR (police AND arrest*)",
    "NOT (a OR the)",
    # stemmed: a word finds its other forms in the article's language
    "elections",
    "election",
    '"state elections"',
    "title:elections -lang:fr",
    "wahl",
    "élection AND lang:fr",
    "выборах",
    "bank",
    "ban*",
    "happy* OR electi*",
]


def _corpus() -> list[tuple[str, str, str, str | None]]:
    path = shared_corpus(SHARED_DATA / "grouping" / "ecbplus-dev.jsonl")
    out = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= CORPUS_ARTICLES:
                break
            record = json.loads(line)
            out.append((f"outlet-{i % 7}", record["title"] or "", record["text"] or "", "en"))
    return out + HANDWRITTEN + STEMMING


def _fill(engine: Engine, articles: list[tuple[str, str, str, str | None]]) -> None:
    with session_scope(engine) as session:
        items = []
        for i, (source, title, body, language) in enumerate(articles):
            entry = ParsedEntry(
                url=f"https://example.org/{i}",
                title=title,
                text=body,
                language=language,
                published=START + timedelta(minutes=i),
            )
            items.append((ensure_source(session, source), entry))
        for n, (source, entry) in enumerate(items):  # distinct first_seen for the order
            store_batch(session, [(source, entry)], now=START + timedelta(minutes=n))


def _indexed(source: str, title: str, body: str, language: str | None) -> Document:
    """An article as the index holds it (title and text stemmed by its language), and its
    source's name as the matcher sees it."""
    doc = Document.of(source=source)
    held = search.document_of(title, body, language)
    for name in ("title", "text", "lang"):
        doc.lists[name] = getattr(held, name)
        doc.sets[name] = frozenset(doc.lists[name])
    return doc


def _expected(articles: list[tuple[str, str, str, str | None]], query: str) -> set[int]:
    """Ids (from 1, in order) the alert matcher's own evaluation picks, for the query in its
    index form over the articles' stemmed words."""
    tree = search.index_tree(parse(query))
    return {i + 1 for i, article in enumerate(articles) if evaluate(tree, _indexed(*article))}


def _ids_of(titles: list[str]) -> set[int]:
    """Ids of the articles with these titles."""
    return {i + 1 for i, article in enumerate(_corpus()) if article[1] in titles}


def _search(engine: Engine, query: str) -> set[int]:
    with session_scope(engine) as session:
        condition = matching_articles(session, query)
        return set(session.execute(select(ARTICLES.c.id).where(condition)).scalars())


@pytest.fixture(scope="module")
def both_engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Engine]]:
    """The same articles stored on SQLite and on Postgres."""
    articles = _corpus()
    tmp = tmp_path_factory.mktemp("search")
    with empty_database("sqlite", tmp) as sqlite_url, empty_database("postgres", tmp) as pg_url:
        engines = {
            name: make_engine(url) for name, url in (("sqlite", sqlite_url), ("postgres", pg_url))
        }
        for engine in engines.values():
            upgrade(engine)
            _fill(engine, articles)
        with engines["postgres"].connect() as conn:  # estimates: both Postgres plans are used
            conn.execute(text("ANALYZE"))
            conn.commit()
        yield engines
        for engine in engines.values():
            engine.dispose()


@pytest.mark.parametrize("query", QUERIES)
def test_same_articles_on_both_engines_as_the_alert_matcher(both_engines, query):
    articles = _corpus()
    expected = _expected(articles, query)
    found = {name: _search(engine, query) for name, engine in both_engines.items()}
    assert found["sqlite"] == found["postgres"], query
    assert found["sqlite"] == expected, query
    for engine in both_engines.values():  # the list (index-driven where it can be), paged
        assert _paged(engine, query) == sorted(expected, reverse=True), query


def _paged(
    engine: Engine, query: str, size: int = 7, filters: ArticleFilter | None = None
) -> list[int]:
    out: list[int] = []
    after = None
    with session_scope(engine) as session:
        filters = replace(filters or ArticleFilter(), q=compile_query(query))
        while True:
            rows, more = list_articles(session, filters, size, after)
            out += [r.id for r in rows]
            if not more:
                return out
            after = Position(rows[-1].first_seen, rows[-1].id)


@pytest.mark.parametrize(
    ("query", "titles"),
    [
        # English: singular and plural, and a phrase, by their stems
        (
            "elections",
            [
                "Election results",
                "Les élections municipales",
                "Elections in Narnia",
                "Elections in Japan",
            ],
        ),
        ("election", ["Election results", "Les élections municipales"]),
        ('"state elections"', ["Election results"]),
        # German, French, Russian: each by its own language's stemmer
        ("wahl", ["Die Wahlen in Bayern"]),
        ("élection AND lang:fr", ["Les élections municipales"]),
        ("выборах", ["Выборы в Госдуму"]),
        # no stemmer (no language; Japanese has none): words as they are
        ("title:elections -lang:en -lang:fr", ["Elections in Narnia", "Elections in Japan"]),
        ("title:election -lang:en -lang:fr", []),
        # a stem in one language is not a word of another: "bank" is "ban" in Lithuanian only
        ("bank AND (imports OR steel)", []),
        ("ban AND imports", ["Ban on imports"]),
        # words are cut at 200 characters before stemming, in articles and queries alike
        ("z" * 250 + "ed", [LONG]),
        (f'"{LONG}"', [LONG]),
    ],
)
def test_words_find_their_forms_in_the_articles_language(both_engines, query, titles):
    for engine in both_engines.values():
        assert _search(engine, query) & _ids_of([a[1] for a in STEMMING]) == _ids_of(titles)


def test_the_alert_matcher_itself_matches_words_exactly(both_engines):
    """Rules stay exact (decision 0206): the matcher does not find "election" in
    "elections"; search does."""
    narnia = Document.of(title="Elections in Narnia", text="The elections were free.")
    assert not evaluate(parse("election"), narnia)
    english = Document.of(title="Election results", text="The state election was held.")
    assert not evaluate(parse("elections"), english)
    assert _ids_of(["Election results"]) <= _search(both_engines["sqlite"], "elections")


def test_the_queries_are_not_trivial(both_engines):
    """Each query selects some articles and leaves out others (else the comparison above
    proves little)."""
    articles = _corpus()
    sizes = [len(_expected(articles, q)) for q in QUERIES]
    assert sum(1 for s in sizes if 0 < s < len(articles)) >= len(QUERIES) - 3


def test_events_of_matching_articles(both_engines):
    for engine in both_engines.values():
        with session_scope(engine) as session:
            session.execute(update(ARTICLES).where(ARTICLES.c.id <= 5).values(event_id=1))
            session.execute(update(ARTICLES).where(ARTICLES.c.id > 300).values(event_id=301))
        with session_scope(engine) as session:
            events = set(session.execute(matching_event_ids(session, "ёлка")).scalars())
            assert events == {301}
            events = set(session.execute(matching_event_ids(session, "hansbrough")).scalars())
            first = set(
                session.execute(
                    select(ARTICLES.c.event_id).where(matching_articles(session, "hansbrough"))
                ).scalars()
            )
            assert events == first - {None}


@pytest.mark.parametrize(
    ("query", "column", "words"),
    [
        ("(kyiv", 1, "unmatched"),
        ('kyiv "north', 6, "unmatched"),
        ("kyiv AND", 9, "end of the query"),
        ("place:paris", 1, "unknown field"),
        ("ky*iv", 1, "wildcard"),
        ("", 1, "empty"),
    ],
)
def test_bad_query_names_the_position(query, column, words):
    with pytest.raises(QueryError) as caught:
        compile_query(query)
    assert caught.value.column == column
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"col {column}:")


def test_paging_and_filters(engine):
    articles = HANDWRITTEN
    _fill(engine, articles)
    with session_scope(engine) as session:
        filters = ArticleFilter(q=compile_query("reuters OR source:reuters"))
        first, more = list_articles(session, filters, limit=2)
        assert more
        rest, more_after = list_articles(
            session, filters, limit=10, after=Position(first[-1].first_seen, first[-1].id)
        )
        assert not more_after
        ids = [a.id for a in first + rest]
        assert ids == sorted(_expected(articles, "source:reuters"), reverse=True)
        english = ArticleFilter(q=compile_query("sanction*"), language="en")
        assert [a.id for a in iter_articles(session, english)] == [6]
        assert all(a.source_name == "Reuters World" for a in first)


def test_index_follows_deletes_and_updates(engine):
    _fill(engine, HANDWRITTEN)
    with session_scope(engine) as session:
        session.execute(delete(ARTICLES).where(ARTICLES.c.id == 4))  # the ёлка article
        session.execute(
            update(ARTICLES).where(ARTICLES.c.id == 1).values(title="Budapest talks", text="")
        )
    assert _search(engine, "ёлка") == set()
    assert _search(engine, "kyiv") == set()  # its old words are gone at once
    assert _search(engine, "budapest") == set()  # not indexed until index_articles runs
    with session_scope(engine) as session:
        assert index_articles(session) == 1
    assert _search(engine, "budapest") == {1}
    with session_scope(engine) as session:
        session.execute(update(ARTICLES).where(ARTICLES.c.id == 2).values(event_id=9))
    assert _search(engine, "président") == {2}  # other columns leave the index alone


def test_migration_indexes_existing_articles(store_url, tmp_path):
    """Articles stored before migration 0010 are searchable after it."""
    engine = make_engine(store_url)
    try:
        upgrade(engine, "0009")
        with session_scope(engine) as session:
            source_id = session.execute(
                text(
                    "INSERT INTO sources (name, url, configured_url, kind, origin, enabled, "
                    "options, consecutive_errors, pending_entries, created_at) VALUES "
                    "('old', 'x', 'x', 'feed', 'cli', true, '{}', 0, 0, :now) RETURNING id"
                ),
                {"now": START},
            ).scalar_one()
            for i, (title, body) in enumerate([("Café crème", "Prix à Paris"), ("Other", "")]):
                session.execute(
                    text(
                        "INSERT INTO articles (title, text, first_seen, content_hash, "
                        "source_id) VALUES (:t, :b, :at, :h, :s)"
                    ),
                    {"t": title, "b": body, "at": START, "h": f"h{i}", "s": source_id},
                )
        upgrade(engine)
        assert _search(engine, "cafe AND prix") == {1}
        assert _search(engine, "NOT cafe") == {2}
    finally:
        engine.dispose()


def test_collected_matches_leave_the_transactions_settings_alone(both_engines, monkeypatch):
    """Postgres: a search whose matches are collected and sorted runs without parallel
    workers (decision 0204), JIT (0208) and the join methods for many rows (0205); the
    transaction's own settings are back afterwards."""
    engine = both_engines["postgres"]
    rare = compile_query("kyiv")  # two articles of 310: collected, not read in id order
    with session_scope(engine) as session:
        own = {name: "on" for name in search._COLLECTED_SETTINGS}
        own |= {"max_parallel_workers_per_gather": "3"}
        for name, value in own.items():
            session.execute(text(f"SET LOCAL {name} = {value}"))
        plan = search._articles_plan(session, ArticleFilter(q=rare), None, 51)
        assert plan.serial
        seen: list[dict[str, str]] = []
        real = search._set_local

        def spy(session, settings):
            real(session, settings)
            seen.append(search._current(session, settings))

        monkeypatch.setattr(search, "_set_local", spy)
        rows, _more = list_articles(session, ArticleFilter(q=rare), 50)
        assert seen[0] == search._COLLECTED_SETTINGS  # in force while the statement ran
        assert [r.id for r in rows] == sorted(_expected(_corpus(), "kyiv"), reverse=True)
        assert search._current(session, own) == own


def test_a_collected_search_that_times_out_raises_the_timeout(both_engines, monkeypatch):
    """Postgres: when a collected search hits the statement timeout, the caller gets the
    timeout (OperationalError, which the API answers 503 + Retry-After), not the error of
    restoring the settings in the aborted transaction (a 500)."""
    engine = both_engines["postgres"]
    slow = select(func.pg_sleep(30).label("id"))
    monkeypatch.setattr(search, "_articles_plan", lambda *a, **k: search._Plan(slow, True))
    applied: list[dict[str, str]] = []
    real = search._set_local

    def spy(session, settings):
        real(session, settings)
        applied.append(settings)

    monkeypatch.setattr(search, "_set_local", spy)
    with (
        pytest.raises(OperationalError, match="statement timeout"),
        session_scope(engine) as session,
    ):
        session.execute(text("SET LOCAL statement_timeout = '500ms'"))
        list_articles(session, ArticleFilter(q=compile_query("kyiv")), 50)
    assert applied == [search._COLLECTED_SETTINGS]  # the statement itself timed out


def test_a_collected_search_failing_in_the_client_puts_the_settings_back(both_engines, monkeypatch):
    """Postgres: an error after the statement ran (here: a row the list cannot read) leaves
    the transaction usable, so the transaction's own settings must be back after it."""
    engine = both_engines["postgres"]
    odd = select(literal(1).label("not_an_article_field"))
    monkeypatch.setattr(search, "_articles_plan", lambda *a, **k: search._Plan(odd, True))
    with session_scope(engine) as session:
        own = search._current(session, search._COLLECTED_SETTINGS)
        with pytest.raises(TypeError):
            list_articles(session, ArticleFilter(q=compile_query("kyiv")), 50)
        assert search._current(session, search._COLLECTED_SETTINGS) == own


def test_a_words_forms_count_as_one_word_in_the_estimate():
    """Postgres decides between reading in id order and collecting by the estimated matches
    (decision 0192). A word's 35 forms are mostly absent: counted as the most common form,
    not summed (summed, a name in 224 of 1,000,000 articles looked like 160,000, and its page
    took 6 s instead of 20 ms)."""
    shares = search._LexemeShares({"en¦polic": 0.2, "en¦kill": 0.05}, rare=0.005)

    def share(query: str) -> float:
        driver, _rest = search._driver(compile_query(query).tree)
        assert driver is not None
        return shares.of(driver)

    assert share("griberber") == pytest.approx(0.005)
    assert share("police") == pytest.approx(0.2)
    assert share('"the police"') == pytest.approx(0.005)  # its rarest word
    assert share("police OR griberber") == pytest.approx(0.205)
    assert share("police AND killed -sport") == pytest.approx(0.01)


def _index_rows(conn: Connection) -> list[tuple[object, ...]]:
    if conn.dialect.name == "postgresql":
        query = "SELECT article_id, CAST(document AS text) FROM article_search ORDER BY 1"
    else:
        query = "SELECT rowid, title, text, lang FROM article_search ORDER BY 1"
    return [tuple(row) for row in conn.execute(text(query))]


def test_the_migrations_frozen_indexer_writes_what_the_live_one_does(both_engines):
    """Migrations 0010 and 0016 write the index with a frozen copy of the indexer (decision
    0094): today it must write exactly the live indexer's rows, on both engines, for
    articles of stemmed languages, of others and of none. When the live format changes,
    the migration that rewrites the index brings its own copy, and this test compares that."""
    for engine in both_engines.values():
        with engine.connect() as conn:
            live = _index_rows(conn)
            assert len(live) == len(_corpus())
            frozen_search.index_every_article(conn, stem=True)
            assert _index_rows(conn) == live
            conn.rollback()


def test_migrations_import_no_live_code_but_column_types():
    """A migration runs on a store at its own revision long after the code moved on: what it
    imports of newswatch must not change under it. Column types (their change is a schema
    change) and the migrations' own frozen copies only (frozen_search, frozen_values)."""
    versions = Path(frozen_search.__file__).parent / "versions"
    allowed = {
        "newswatch.store.columns",
        "newswatch.store.migrations.frozen_search",
        "newswatch.store.migrations.frozen_values",
    }
    found = set()
    for path in sorted(versions.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found |= {(path.name, n) for n in names if n.startswith("newswatch")}
    assert len(found) > 10  # the walk saw the imports
    assert {(f, n) for f, n in found if n not in allowed} == set()


@pytest.mark.parametrize("in_order", [True, False])
@pytest.mark.parametrize("query", QUERIES)
def test_the_page_taken_from_the_index_first_lists_what_the_joined_statement_lists(
    both_engines, query, in_order, monkeypatch
):
    """A query the index answers alone takes its page of ids from the index and joins only
    them (decision 0208); with a filter the index matches are joined to every article's row
    and filtered there. A filter every article passes must not change the list, on either
    engine, for both of Postgres' ways of reading the matches (decision 0192)."""
    monkeypatch.setattr(search, "_scan_in_order", lambda *_args: in_order)
    everything = ArticleFilter(since=START - timedelta(days=1))
    for engine in both_engines.values():
        alone = _paged(engine, query)
        filtered = _paged(engine, query, filters=everything)
        assert alone == filtered, query
        with session_scope(engine) as session:
            plan = search._articles_plan(session, ArticleFilter(q=compile_query(query)), None, 50)
            page_first = " AS page " in str(plan.query)
            assert page_first == (search._driver(compile_query(query).tree)[1] == []), query
