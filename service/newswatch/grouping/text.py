"""Text features for grouping: terms of title and lead, named entities, link-list tails.

Everything here is pure Python over one article and fast enough for ingest (tens of µs).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path
from typing import cast

WORD = re.compile(r"[^\W\d_][^\W_]*(?:['’\-][^\W\d_][^\W_]*)*", re.UNICODE)
# Punctuation that news text puts around words: no character here can be part of a WORD
# match at the edge of a white-space separated token.
_EDGE = "\"'“”‘’«»„()[]{}<>.,;:!?…-–—/*"
# Figures with at least two digits, or a decimal: "24", "6.1", "2013", "15,000" (not "3").
# (The look-behind sits after the first digit: most positions fail on \d at once, twice as
# fast as asserting before it at every position.)
NUMBER = re.compile(r"\d(?<![\w.]\d)(?:[\d,]*\d|\.\d+)(?!\w)")
# A figure that is a year: four digits from 1900 to 2099 written without a separator
# ("2013"; "2,000 people" is a count, decision 0189).
YEAR = re.compile(r"(?:19|20)\d\d")
SENTENCE_END = re.compile(r"[.!?…:;\"'”»)]\s*$")

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours
    yourself yourselves said says say new one two three first last year years would also told
    according may might must shall us mr mrs ms dr per via amid get gets got make makes made
    like just since still even well back many much week weeks day days time today yesterday
    tomorrow monday tuesday wednesday thursday friday saturday sunday january february march
    april june july august september october november december jan feb mar apr jun jul aug
    sep sept oct nov dec report reports reported news update updated video photo photos watch
    read more people""".split()
)

# Names that denote the same entity in news text (DPRK and North Korea, Moscow and Russia,
# British and United Kingdom): the kind of alias a name key cannot derive. Keys are
# normalised phrases (lowercase, ASCII-folded); values are the canonical key. The table is
# data (data/aliases-en.txt names its sources), the same for every deployment.
ALIASES_FILE = Path(__file__).with_name("data") / "aliases-en.txt"


def load_aliases(path: Path = ALIASES_FILE) -> dict[str, str]:
    """The alias table of `path`: one entity a line, canonical name first, "|" between
    names; "#" starts a comment. A line with one name only is an error naming the line."""
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        names = [fold(n.strip()) for n in line.split("|") if n.strip()]
        if len(names) < 2:
            raise ValueError(f"{path}:{number}: an alias line needs a name and an alias")
        for name in names:
            out[name] = names[0]
    return out


_NAME_KEYS: dict[str, str] = {}

# Link-list tails: a run of short lines without sentence punctuation at the end of a page.
TAIL_MIN_LINES = 5
TAIL_MAX_WORDS = 14
# Characters of the body shingled for near-duplicates (about 250 words: a copy shares its
# beginning).
SHINGLE_CHARS = 1500


def fold(text: str) -> str:
    """Lowercase ASCII-folded text (é -> e), so transliterations compare equal."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


ALIASES: dict[str, str] = load_aliases()
MAX_ALIAS_WORDS = max(len(k.split()) for k in ALIASES)
ALIAS_FIRST_WORDS = frozenset(k.split()[0] for k in ALIASES)


_PHONETIC = str.maketrans(
    {"k": "k", "c": "k", "q": "k", "g": "k", "z": "s", "x": "s", "v": "f", "p": "b", "d": "t"}
)


def name_key(token: str) -> str:
    """A transliteration-tolerant key of a name token: "Kwang"/"Gwan" and "Chol"/"Chul" agree.

    Voiced/unvoiced pairs fold together (g/k, d/t, b/p), vowels and h/w/y after the first
    letter are dropped, a final "ng" becomes "n", doubled letters collapse, and a possessive
    "'s" goes ("Bush's" is Bush).
    """
    t = fold(token)
    if t.endswith(("'s", "’s")):
        t = t[:-2]
    t = t.replace("'", "").replace("’", "").replace("-", "")
    if t.endswith("ng"):
        t = t[:-1]
    t = t.replace("ph", "f").replace("ch", "c").replace("sh", "s").replace("kh", "k")
    t = t.translate(_PHONETIC)
    if not t:
        return t
    out = [t[0]]
    for ch in t[1:]:
        if ch in "aeiouyhw" or ch == out[-1]:
            continue
        out.append(ch)
    return "".join(out)


def stem(word: str) -> str:
    """A light English stem: plural and common verb endings, so "talks"/"talk" agree."""
    if len(word) > 4:
        if word.endswith("ies"):
            return word[:-3] + "y"
        if word.endswith("ing") and len(word) > 5:
            return word[:-3]
        if word.endswith("ed") and len(word) > 5:
            return word[:-2]
        if word.endswith("es") and word[-3] in "sxz":
            return word[:-2]
        if word.endswith("s") and not word.endswith("ss"):
            return word[:-1]
    return word


_TERMS: dict[str, str] = {}
_TERMS_MAX = 200_000


def _term(word: str) -> str:
    """The index term of a word ("" for stopwords and single letters), memoised: stemming
    each word of every article in Python was a third of the cost of grouping."""
    term = _TERMS.get(word)
    if term is None:
        low = word.lower()
        term = "" if low in STOPWORDS or len(low) < 2 else stem(low)
        if len(_TERMS) >= _TERMS_MAX:
            _TERMS.clear()
        _TERMS[word] = term
    return term


def _add_terms(terms: dict[str, float], words: list[str], weight: float) -> None:
    """Add `weight` to each word's term (`n * weight` once for a term seen n times), counted
    by Counter with the memo of _term."""
    found = list(map(_TERMS.get, words))
    if None in found:
        found = [_term(w) if t is None else t for w, t in zip(words, found, strict=True)]
    get = terms.get
    for term, n in Counter(found).items():
        if term:
            terms[term] = get(term, 0.0) + n * weight


def strip_tail(text: str) -> tuple[str, int]:
    """The text without a trailing link list; and how many lines were cut.

    A tail is at least TAIL_MIN_LINES consecutive final lines that are short, do not end a
    sentence, and start with a capital letter or digit — headlines of other stories.
    """
    # Lines are read from the end, one at a time: most texts stop at their last line, and
    # splitting the whole text cost more than grouping read of it.
    cut = 0
    keep = end = len(text.rstrip())
    while end > 0:
        start = text.rfind("\n", 0, end) + 1
        ln = text[start:end].strip()
        end = start - 1
        if not ln:
            continue
        # Counting stops past the limit: the last line is most often a long paragraph.
        short = len(ln.split(None, TAIL_MAX_WORDS)) <= TAIL_MAX_WORDS
        headline = short and not SENTENCE_END.search(ln) and ln[0].isupper()
        if not (headline or (short and ln[0].isdigit())):
            break
        cut += 1
        keep = max(start - 1, 0)
    if cut < TAIL_MIN_LINES:
        return text, 0
    return text[:keep].rstrip(), cut


@dataclass
class Features:
    """What the clustering needs from one article."""

    terms: dict[str, float] = field(default_factory=dict)  # term -> weighted frequency
    entities: dict[str, str] = field(default_factory=dict)  # key -> surface form
    shingle_text: str = ""  # lowercased beginning of title and body, for MinHash
    words: int = -1  # white-space separated words of shingle_text (-1: not counted yet)
    tail_lines: int = 0
    title: str = ""  # the headline as given, for the names it is about (evidence.py)
    years: frozenset[str] = frozenset()  # figure terms that are years ("#2013"), 0189


def _entity_key(word: str) -> str:
    """The entity key of a word, memoised: "@key" for a name, "" for no entity, and a "+"
    in front when an alias phrase may start here ("North" of "North Korea")."""
    key = _NAME_KEYS.get(word)
    if key is None:
        key = ""
        if word[0].isupper():
            low = fold(word)
            if low not in STOPWORDS and len(low) > 1 and not (word.isupper() and len(word) > 5):
                key = "@" + name_key(word)
            if low in ALIAS_FIRST_WORDS:
                key = "+" + key
        if len(_NAME_KEYS) > _TERMS_MAX:
            _NAME_KEYS.clear()
        _NAME_KEYS[word] = key
    return key


def _entities(words: list[str], out: dict[str, str]) -> None:
    """Capitalised runs as entities; alias phrases canonicalised, other names by name key."""
    keys = list(map(_NAME_KEYS.get, words))
    if None in keys:
        keys = [_entity_key(w) if k is None else k for w, k in zip(words, keys, strict=True)]
    after = 0  # the end of the last alias phrase
    # compress() walks the words in C and stops only at the capitalised ones.
    for i in compress(range(len(words)), keys):
        if i < after:
            continue
        key = cast(str, keys[i])  # compress() passed only the words with a key
        if key[0] == "+":
            alias = _alias_entity(words, i)
            if alias:
                size, alias_key, phrase = alias
                out.setdefault(alias_key, phrase)
                after = i + size
                continue
            key = key[1:]
            if not key:
                continue
        out.setdefault(key, words[i])


def _alias_entity(words: list[str], i: int) -> tuple[int, str, str] | None:
    """The longest alias phrase starting at words[i]: (its words, entity key, the phrase);
    None when there is none."""
    for size in range(min(MAX_ALIAS_WORDS, len(words) - i), 0, -1):
        phrase = " ".join(words[i : i + size])
        canonical = ALIASES.get(fold(phrase))
        if canonical is not None:
            return size, "@" + canonical, phrase
    return None


def headline_names(title: str) -> dict[str, str]:
    """The entities of a headline (entity key -> surface form), as extract() finds them."""
    out: dict[str, str] = {}
    _entities(words_of(title), out)
    return out


def words_of(text: str, limit: int | None = None) -> list[str]:
    """WORD.findall(text)[:limit], about twice as fast: white-space separated tokens that are
    letters once the punctuation around them is stripped (nine in ten in news prose) are
    words as they are; only the others go through the regex. Exact, since no match spans
    white space and none has a character of _EDGE at its ends. Tokens past the limit are
    left unsplit."""
    out: list[str] = []
    while True:
        if limit is None:
            tokens, text = text.split(), ""
        else:
            wanted = limit - len(out)
            tokens = text.split(None, wanted)
            text = tokens.pop() if len(tokens) > wanted else ""
        _collect_words(tokens, out)
        if not text or (limit is not None and len(out) >= limit):
            return out if limit is None else out[:limit]


def _collect_words(tokens: list[str], out: list[str]) -> None:
    """The words of white-space separated tokens (see words_of)."""
    append = out.append
    for token in tokens:
        if token.isalpha():
            append(token)
            continue
        core = token.strip(_EDGE)
        if core.isalpha():
            append(core)
        elif core and not core.isdecimal():  # decimal digits alone hold no word
            out += WORD.findall(core)


def _lead_chars(body: str, words: int) -> int:
    """Enough characters of `body` to hold its first `words` words (news prose averages
    about six characters a word with its space; eight leaves room)."""
    return words * 8


def extract(
    title: str | None,
    body: str | None,
    *,
    number_weight: float = 0.0,
    lead_words: int,
    body_words: int,
    title_weight: float,
    body_weight: float,
) -> Features:
    """Features of one article: title terms weigh `title_weight`, the first `lead_words` of
    the body 1, the next words up to `body_words` `body_weight`; a link-list tail is cut."""
    feats = Features()
    title = title or ""
    feats.title = title
    body = body or ""
    body, feats.tail_lines = strip_tail(body) if "\n" in body else (body, 0)
    title_words = words_of(title)
    # Terms and entities come from the first `body_words` words only; the near-duplicate
    # shingles use every word (split on white space: C speed, and copies split alike).
    wanted = body_words + len(title_words)
    body_tokens = words_of(body[: _lead_chars(body, wanted)], wanted)
    # ECB+-like bodies repeat the title as their first line.
    if title_words and body_tokens[: len(title_words)] == title_words:
        body_tokens = body_tokens[len(title_words) :]
    terms = feats.terms
    for weight, words in (
        (title_weight, title_words),
        (1.0, body_tokens[:lead_words]),
        (body_weight, body_tokens[lead_words:body_words]),
    ):
        if words and weight > 0:
            _add_terms(terms, words, weight)
    _entities(title_words, feats.entities)
    _entities(body_tokens[:lead_words], feats.entities)
    if number_weight > 0:
        # Figures tell apart two events of one kind: a 6.1 quake from a 7.0, 24 dead from 3.
        years = []
        for n in NUMBER.findall(f"{title} {body[: _lead_chars(body, lead_words)]}"):
            key = "#" + n.replace(",", "")
            terms[key] = terms.get(key, 0.0) + number_weight
            if YEAR.fullmatch(n):  # the raw figure: "2,000" drops its comma in the term
                years.append(key)
        if years:
            feats.years = frozenset(years)
    # A copy of a report shares its beginning: the first words are enough for near-duplicate
    # shingles, and lowercasing, splitting and hashing a whole long page was a third of the
    # cost of grouping it.
    feats.shingle_text = f"{title} {body[:SHINGLE_CHARS]}".lower()
    return feats
