"""The full-text index's rows as migrations 0010 and 0016 write them: a frozen copy.

A migration must do tomorrow what it did the day it was written: it runs on a store at its
own revision, long after the live code (store/search.py, store/stemming.py and the folding
of alerts/query.py) has moved on to the head's schema and format. So the migrations that
write the index use this copy of what the live indexer did at revision 0016, and nothing
of it; the live code never imports it (decision 0094). Never change it: a later change of
the index's format comes with a migration of its own and, if that migration writes the
index, a frozen copy of its own. tests/test_search.py checks that this copy and the live
indexer write the same rows as long as the format has not changed.

Unstemmed (`stem=False`) is the format of revisions 0010 to 0015; stemmed, 0016's.
"""

from __future__ import annotations

import re
import unicodedata

import Stemmer
from sqlalchemy import Connection, text

BATCH = 500
MAX_TITLE_WORDS = 1_000
MAX_TEXT_WORDS = 15_000
MAX_WORD_CHARS = 200
TAG = "\u00a6"
WEIGHTS = (("title", "A"), ("text", "B"), ("lang", "C"))
ALGORITHMS = {
    "ar": "arabic",
    "ca": "catalan",
    "cs": "czech",
    "da": "danish",
    "de": "german",
    "el": "greek",
    "en": "english",
    "eo": "esperanto",
    "es": "spanish",
    "et": "estonian",
    "eu": "basque",
    "fa": "persian",
    "fi": "finnish",
    "fr": "french",
    "ga": "irish",
    "hi": "hindi",
    "hu": "hungarian",
    "hy": "armenian",
    "id": "indonesian",
    "it": "italian",
    "lt": "lithuanian",
    "ne": "nepali",
    "nl": "dutch",
    "no": "norwegian",
    "pl": "polish",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sr": "serbian",
    "st": "sesotho",
    "sv": "swedish",
    "ta": "tamil",
    "tr": "turkish",
    "yi": "yiddish",
}
SAME_AS = {"nb": "no", "nn": "no"}
_WORD = re.compile(r"\w+", re.UNICODE)
_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_SELECT = text(
    "SELECT id, title, text, summary, language FROM articles WHERE id > :after "
    "ORDER BY id LIMIT :batch"
)
_SQLITE_INSERT = text(
    "INSERT INTO article_search (rowid, title, text, lang) VALUES (:id, :title, :text, :lang)"
)
_POSTGRES_INSERT = text(
    "INSERT INTO article_search (article_id, document) VALUES (:id, CAST(:document AS tsvector))"
)


def index_every_article(conn: Connection, *, stem: bool) -> None:
    """Empty the index and write every article's row again, BATCH articles at a time."""
    postgres = conn.dialect.name == "postgresql"
    conn.execute(text("DELETE FROM article_search"))
    stemmers: dict[str, Stemmer.Stemmer] = {}
    after = 0
    while True:
        found = conn.execute(_SELECT, {"after": after, "batch": BATCH}).all()
        if not found:
            return
        rows = [
            _row(r[0], r[1], r[2] or r[3], r[4], stem, stemmers, postgres=postgres) for r in found
        ]
        conn.execute(_POSTGRES_INSERT if postgres else _SQLITE_INSERT, rows)
        after = found[-1][0]


def _row(
    article_id: int,
    title: str | None,
    body: str | None,
    language: str | None,
    stem: bool,
    stemmers: dict[str, Stemmer.Stemmer],
    *,
    postgres: bool,
) -> dict[str, object]:
    code = _code(language) if stem else None
    fields = {
        "title": _stemmed(_cut(_words(title or ""), MAX_TITLE_WORDS), code, stemmers),
        "text": _stemmed(_cut(_words(body or ""), MAX_TEXT_WORDS), code, stemmers),
        "lang": _words(language or ""),
    }
    if postgres:
        return {"id": article_id, "document": _tsvector(fields)}
    return {"id": article_id, **{name: " ".join(words) for name, words in fields.items()}}


def _fold(text: str) -> str:
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _words(text: str) -> list[str]:
    if text.isascii():
        return _WORD.findall(text.lower())
    out: list[str] = []
    text = _MARKS.sub("", unicodedata.normalize("NFC", text))
    for word in _WORD.findall(text):
        if word.isascii():
            out.append(word.lower())
        else:
            out.extend(_WORD.findall(_fold(word)))
    return out


def _cut(words: list[str], limit: int) -> list[str]:
    return [w[:MAX_WORD_CHARS] for w in words[:limit]]


def _code(language: str | None) -> str | None:
    parts = _words(language or "")
    if not parts:
        return None
    code = SAME_AS.get(parts[0], parts[0])
    return code if code in ALGORITHMS else None


def _stemmed(words: list[str], code: str | None, stemmers: dict[str, Stemmer.Stemmer]) -> list[str]:
    if code is None:
        return words
    stemmer = stemmers.get(code) or stemmers.setdefault(code, Stemmer.Stemmer(ALGORITHMS[code]))
    return [code + TAG + s for s in stemmer.stemWords(words)]


def _tsvector(fields: dict[str, list[str]]) -> str:
    positions: dict[str, list[str]] = {}
    at = 0
    for name, weight in WEIGHTS:
        for word in fields[name]:
            at += 1
            positions.setdefault(word, []).append(f"{at}{weight}")
        at += 1
    return " ".join(f"{_quote(word)}:{','.join(p)}" for word, p in positions.items())


def _quote(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"
