"""Snowball stemming of the search index's words, by the article's language (decision 0205).

An article whose language has a Snowball algorithm is indexed by the stems of its words, each
tagged with the language: `en¦elect` for "elections" in English, `de¦wahl` for "Wahlen" in
German. Articles of other languages, or of none, keep their words as they are. The tag keeps
languages apart (English "news" and Dutch "new" stay different stems) and a stem apart from an
unstemmed word: `¦` is no word character, so no word of an unstemmed article contains it.

A query word stands for its stem in every language (and for itself, for the unstemmed
articles): store/search.py rewrites the query that way, so both engines answer the same.

Stems depend on the Snowball version: PyStemmer is pinned to a minor version, and a new one
means re-indexing (`newswatch articles reindex --all`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import Stemmer

from newswatch.alerts.query import words

TAG = "\u00a6"  # ¦
# ISO 639-1 code -> Snowball algorithm (PyStemmer's name). The code tags the stems.
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
# Postgres refuses lexemes over 2,047 bytes; longer words are cut (store/search.py, queries too).
MAX_WORD_CHARS = 200
# Codes that name the same algorithm (Norwegian Bokmål and Nynorsk).
_SAME_AS = {"nb": "no", "nn": "no"}
CODES: tuple[str, ...] = tuple(sorted(ALGORITHMS))

# A PyStemmer object is not safe to share between threads (it keeps a cache and a buffer):
# each thread has its own (the API answers in a thread pool).
_local = threading.local()


def _stemmer(code: str) -> Stemmer.Stemmer:
    stemmers: dict[str, Stemmer.Stemmer] | None = getattr(_local, "stemmers", None)
    if stemmers is None:
        stemmers = _local.stemmers = {}
    found = stemmers.get(code)
    if found is None:
        found = stemmers[code] = Stemmer.Stemmer(ALGORITHMS[code])
    return found


def stem_language(language: str | None) -> str | None:
    """The code of the algorithm stemming an article of `language` (its primary subtag:
    `en` of `en`, `en-US`, `EN_gb`), None when Snowball has none for it."""
    parts = words(language or "")
    if not parts:
        return None
    code = _SAME_AS.get(parts[0], parts[0])
    return code if code in ALGORITHMS else None


def stem_words(tokens: Sequence[str], code: str | None) -> list[str]:
    """The index's tokens for an article's folded words: their tagged stems in language
    `code`, or the words themselves when `code` is None."""
    if code is None:
        return list(tokens)
    prefix = code + TAG
    return [prefix + stem for stem in _stemmer(code).stemWords(tokens)]


def stem_word(word: str, code: str) -> str:
    """One folded word's tagged stem in language `code`."""
    return code + TAG + _stemmer(code).stemWord(word)


# Distinct words a thread remembers the index token of, per language (then it starts over):
# the words of news recur, and a dictionary lookup costs a third of stemming and tagging.
MEMO_WORDS = 50_000


def _memo(code: str) -> dict[str, str]:
    memos: dict[str, dict[str, str]] | None = getattr(_local, "memos", None)
    if memos is None:
        memos = _local.memos = {}
    return memos.setdefault(code, {})


def index_tokens(tokens: list[str], code: str | None) -> list[str]:
    """The index's tokens for an article's folded words: each cut to MAX_WORD_CHARS, then
    its tagged stem in language `code` (stem_words), or the cut word when `code` is None.
    Each distinct word is stemmed once per thread and language (a memo of MEMO_WORDS, keyed
    on the cut word: a feed's 100 KB tokens must not stay in memory whole)."""
    cut = [w[:MAX_WORD_CHARS] for w in tokens]
    if code is None:
        return cut
    memo = _memo(code)
    found = [memo.get(w) for w in cut]
    missing = [w for w, token in zip(cut, found, strict=True) if token is None]
    if not missing:
        return found  # type: ignore[return-value]  # (no None left)
    distinct = list(dict.fromkeys(missing))
    made = dict(zip(distinct, stem_words(distinct, code), strict=True))
    if len(memo) + len(made) > MEMO_WORDS:
        memo.clear()
    memo.update(made)
    return [made[w] if token is None else token for w, token in zip(cut, found, strict=True)]
