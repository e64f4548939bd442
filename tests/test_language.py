"""An article's language: declared codes normalised and kept, the rest detected from real text,
nothing stored for text too short or too unclear to tell; once per new article, in every
path into the store (feeds, pages, replay)."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import replace

import pytest
from sqlalchemy import select, text

from newswatch.api import create_app
from newswatch.config import FileConfig, Settings
from newswatch.fetch.extract import extract_html
from newswatch.fetch.feeds import parse_feed
from newswatch.fetch.language import detect_language, language_of, normalise_language
from newswatch.pipeline import Pipeline
from newswatch.replay import replay
from newswatch.shared_types import ParsedEntry
from newswatch.store.articles import ensure_source, store_batch
from newswatch.store.db import make_engine, session_scope, upgrade
from newswatch.store.models import Article
from tests.api_support import running
from tests.conftest import SHARED_DATA
from tests.test_cli import newswatch

FEEDS = SHARED_DATA / "feeds"
PAGES = SHARED_DATA / "extraction" / "article-extraction-benchmark"


@pytest.mark.parametrize(
    ("declared", "stored"),
    [
        ("en-US", "en"),
        ("EN", "en"),
        ("en_gb", "en"),
        (" de-DE ", "de"),
        ("pt-br", "pt"),
        ("zh-Hant-TW", "zh"),
        ("fr, en", "fr"),
        ("iw", "he"),  # withdrawn code still found in feeds
        ("gsw", "gsw"),  # Swiss German has no two-letter code
        ("eng", "en"),  # ISO 639-2, as some feeds write it
        ("ger", "de"),
        ("und", None),
        ("", None),
        (None, None),
        ("English", None),  # a name, not a code
        ("x-default", None),
    ],
)
def test_declared_codes_are_normalised(declared: str | None, stored: str | None) -> None:
    assert normalise_language(declared) == stored


def _entries(path: str) -> list[ParsedEntry]:
    return parse_feed((FEEDS / path).read_bytes(), url="https://feed.example/").entries


# Real feeds that declare no language (or, for Spiegel and Il Giornale, one we drop here),
# with the language they are written in.
REAL_FEEDS = [
    ("rss-parser/test/input/heise.atom", "de"),
    ("node-feedparser/test/feeds/iconv.xml", "ru"),
    ("feed-rs/fixture/rss2/rss_2.0_spiegel.xml", "de"),
    ("rss-parser/test/input/encoding.rss", "pt"),
    ("feed-rs/fixture/rss2/rss_2.0_ilgiornale.xml", "it"),
    ("rss-parser/test/input/reddit.rss", "en"),
    ("rss-parser/test/input/feedburner.atom", "en"),
]


@pytest.mark.parametrize(("path", "language"), REAL_FEEDS)
def test_undeclared_feed_entries_are_detected(path: str, language: str) -> None:
    """Title + summary of real entries: most get the right language, none a wrong one."""
    entries = [replace(e, language=None) for e in _entries(path)]
    said = Counter(language_of(e)[0] for e in entries)
    assert set(said) <= {language, None}, said
    assert said[language] >= 0.8 * len(entries), said


PAGE_LANGUAGES = {  # extraction-benchmark pages in five more languages (declared in <html lang>)
    "0ec95c7261d122f304728e90c983450ef1ce1e0b423546835c397d50aaf0d0f2": "ko",
    "85439e26c41c75901820d01a13e8cea7836abb58635ea3986f71a163ab0311d3": "ja",
    "21486419bb109c5a62a68957f528e6ff29c92f58d8d3c1f2837c86ff3f3e11f9": "id",
    "23aaecd14171f96cfd201a8a46666097e286ad71f74f29347a78c5ecba50da1e": "pt",
    "c82b3d1d540bbbd6081bdfb78b4c068c583aa766bcaaefe7ad16d24e5413a829": "ru",
}


@pytest.mark.parametrize(("page_id", "language"), PAGE_LANGUAGES.items())
def test_undeclared_page_text_is_detected(page_id: str, language: str) -> None:
    """A real page with its lang attribute removed: the text says which language it is."""
    html = gzip.decompress((PAGES / "html" / f"{page_id}.html.gz").read_bytes()).decode(
        "utf-8", "replace"
    )
    declared = extract_html(html, "https://page.example/a")
    assert declared.language == language  # normalised from e.g. "pt-BR"
    bare = extract_html(html.replace(" lang=", " data-was-lang="), "https://page.example/a")
    assert bare.language is None and bare.text
    entry = ParsedEntry(title=bare.title, text=bare.text, language=bare.language)
    assert language_of(entry) == (language, "detected")


@pytest.mark.parametrize(
    "title",
    [
        "0.2.0",  # a release feed
        "Q&A",
        "Marcus Aurelius",  # a name is in no one language
        "Giant Bombcast 05/03/2016",
        "NBA",
        "",
        "   ",
    ],
)
def test_short_or_ambiguous_text_gives_none(title: str) -> None:
    assert detect_language(title, None) is None
    assert language_of(ParsedEntry(title=title)) == (None, None)


def test_a_declared_language_is_kept_over_the_text() -> None:
    """Feeds know their language better than a guess: an English title in a feed that says
    it is Dutch stays Dutch."""
    entry = ParsedEntry(title="Government announces new measures on energy prices", language="nl")
    assert detect_language(entry.title, None) == "en"
    assert language_of(entry) == ("nl", "declared")


def test_entry_level_declarations_win_over_the_feed() -> None:
    """RSS dc:language on an item and Atom xml:lang on an entry override the feed's own."""
    rss = b"""<?xml version="1.0"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>t</title>
<language>en-US</language>
<item><title>Hola</title><link>https://a.example/1</link><dc:language>es</dc:language></item>
<item><title>Hi</title><link>https://a.example/2</link></item>
</channel></rss>"""
    assert [e.language for e in parse_feed(rss).entries] == ["es", "en-US"]
    atom = b"""<?xml version="1.0"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="fr"><title>t</title>
<entry xml:lang="de-AT"><title>Hallo</title><id>urn:1</id></entry>
<entry><title>Bonjour</title><id>urn:2</id></entry></feed>"""
    feed = parse_feed(atom)
    assert feed.language == "fr"
    assert [language_of(e)[0] for e in feed.entries] == ["de", "fr"]


def _pipeline(engine) -> Pipeline:  # type: ignore[no-untyped-def]
    return Pipeline(engine, FileConfig(), Settings(_env_file=None))  # type: ignore[call-arg]


HEISE = _entries("rss-parser/test/input/heise.atom")[0]
GERMAN = ParsedEntry(url="https://heise.example/1", title=HEISE.title, summary=HEISE.summary)
DECLARED = ParsedEntry(
    url="https://news.example/2",
    title="Bundesregierung beschließt neues Gesetz zur Rente",  # German text, declared English
    language="EN-us",
)
TOO_SHORT = ParsedEntry(url="https://news.example/3", title="0.2.0")


def _languages(engine) -> dict[str | None, tuple[str | None, str | None]]:  # type: ignore[no-untyped-def]
    query = select(Article.url, Article.language, Article.language_source)
    with session_scope(engine) as session:
        return {url: (language, how) for url, language, how in session.execute(query)}


def test_stored_languages_declared_detected_or_none(engine) -> None:  # type: ignore[no-untyped-def]
    """Through the pipeline into SQLite and Postgres."""
    pipeline = _pipeline(engine)
    with session_scope(engine) as session:
        source_id = ensure_source(session, "heise").id
    result = pipeline.ingest(source_id, [GERMAN, DECLARED, TOO_SHORT])  # type: ignore[arg-type]
    assert [a.language for a in result.stored] == ["de", "en", None]
    assert _languages(engine) == {
        "https://heise.example/1": ("de", "detected"),
        "https://news.example/2": ("en", "declared"),
        "https://news.example/3": (None, None),
    }


def test_detection_runs_once_per_new_article(engine) -> None:  # type: ignore[no-untyped-def]
    """Entries found to be stored already (a feed polled again, a copy in the same batch)
    are not detected again."""
    asked: list[str | None] = []

    def counting(entry: ParsedEntry) -> tuple[str | None, str | None]:
        asked.append(entry.url)
        return language_of(entry)

    with session_scope(engine) as session:
        source = ensure_source(session, "heise")
        copy = replace(GERMAN, guid="other")
        store_batch(session, [(source, GERMAN), (source, copy)], language_of=counting)
    with session_scope(engine) as session:
        source = ensure_source(session, "heise")
        again = store_batch(session, [(source, GERMAN), (source, DECLARED)], language_of=counting)
    assert asked == ["https://heise.example/1", "https://news.example/2"]
    assert [a.is_new for a in again] == [False, True]


def test_replayed_articles_are_detected(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lines = [
        {"id": "a", "source": "heise", "title": GERMAN.title, "text": GERMAN.summary},
        {"id": "b", "source": "x", "title": "Fed official says weak data caused by weather"},
        {"id": "c", "source": "x", "title": "NBA"},
    ]
    path = tmp_path / "articles.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    result = replay(engine, _pipeline(engine), path)
    with session_scope(engine) as session:
        rows = dict(session.execute(select(Article.id, Article.language)).all())  # type: ignore[arg-type]
    assert [rows[result.article_of[key]] for key in "abc"] == ["de", "en", None]


def test_language_is_shown_in_the_api_the_event_page_and_the_cli(engine, cli_env) -> None:  # type: ignore[no-untyped-def]
    """A detected language appears wherever articles are shown (the CLI runs as a real
    process on the same store)."""
    with session_scope(engine) as session:
        source_id = ensure_source(session, "heise").id
    stored = _pipeline(engine).ingest(source_id, [GERMAN]).stored[0]  # type: ignore[arg-type]
    with session_scope(engine) as session:
        event_id = session.get(Article, stored.id).event_id  # type: ignore[union-attr]
    with running(create_app(engine, Settings(_env_file=None))) as api:  # type: ignore[call-arg]
        detail = api.get(f"/api/articles/{stored.id}").json()
        assert (detail["language"], detail["language_source"]) == ("de", "detected")
        assert [a["language"] for a in api.get("/api/articles").json()["items"]] == ["de"]
        event = api.get(f"/api/events/{event_id}").json()
        assert [a["language"] for a in event["articles"]] == ["de"]
        page = api.get(f"/events/{event_id}").text
        assert 'lang="de"' in page and '<span class="lang">de</span> (detected)' in page
    listed = newswatch("articles", "list", env=cli_env)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert row.split()[header.split().index("lang")] == "de"  # "-", date time: as the header
    assert row.endswith(f"[heise] {GERMAN.title}")
    as_json = json.loads(newswatch("articles", "list", "--json", env=cli_env).stdout)
    assert (as_json["language"], as_json["language_source"]) == ("de", "detected")
    shown = newswatch("events", "show", str(event_id), env=cli_env)
    assert f"de  [heise]  {GERMAN.title}" in shown.stdout


def test_migration_marks_stored_languages_declared(store_url) -> None:  # type: ignore[no-untyped-def]
    """Languages stored before detection existed came from the sources: 0006 says so, and
    normalises their codes so that `lang:` rules match them."""
    eng = make_engine(store_url)
    try:
        upgrade(eng, "0005")
        with eng.begin() as conn:
            for n, language in enumerate(["en_US", None, "de", "English"]):
                conn.execute(
                    text(
                        "INSERT INTO articles (title, first_seen, language, content_hash) "
                        "VALUES (:t, CURRENT_TIMESTAMP, :l, :h)"
                    ),
                    {"t": f"old {n}", "l": language, "h": f"h{n}"},
                )
        upgrade(eng)
        with eng.connect() as conn:
            rows = conn.execute(
                text("SELECT language, language_source FROM articles ORDER BY id")
            ).all()
        assert [tuple(r) for r in rows] == [
            ("en", "declared"),
            (None, None),
            ("de", "declared"),
            ("English", "declared"),  # not a code: kept as it was
        ]
    finally:
        eng.dispose()


@pytest.mark.parametrize(
    "text",
    [
        "abcdefghi",
        "abcdefghij",
        "1234567890 abc",
        "Ünïcødé ñ 東京都 العربية",
        "a1b2c3d4e5f6g7h8i9j",
        "",
        "²½ⅫⅣ 9 letters",
    ],
)
def test_the_letter_floor_counts_letters_as_str_isalpha(text: str) -> None:
    """The floor stops at the tenth letter: it says what counting every letter would."""
    from newswatch.fetch.language import MIN_LETTERS, _has_letters

    assert _has_letters(text, MIN_LETTERS) == (sum(c.isalpha() for c in text) >= MIN_LETTERS)
    assert _has_letters(text, 1) == any(c.isalpha() for c in text)
