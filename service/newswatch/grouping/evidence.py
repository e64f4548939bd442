"""Specific evidence for grouping: the names an article is about, and whether they agree with
an event's (docs/decisions/0175-specific-evidence-veto.md).

An event is defined by what is specific to it (Mt. Gox, Sbarro, the people named), not by
topic words and very common entities (bankruptcy, Google). Two things decide what is
specific here:

- **Names, not capitalised words.** A headline's capitalised words are names only when they
  are no common words, inflections of them, or titles and designators written beside names
  ("Leverages", "Inc", "Mt"); initials and codes ("USB", "Q4") may agree but tell no subject
  (decision 0179). Nor are they words the stream writes in lower case too: "Files For
  Bankruptcy" is capitalised in a title-case headline, but the stream writes "files" and
  "bankruptcy" in lower case elsewhere; "Sbarro" it never does. `NameFinder` learns that
  from every title it sees (sentence-case ones only: title case says nothing), on top of a
  corpus-independent list of common English words (data/common-words-en.txt).
- **Rare in the window.** An entity posted under many of the window's events (Google,
  Congress, the United States) tells none of them apart: its event frequency, the live
  events in its posting list, must be at most `common_events`.

A join or a merge is vetoed when both sides name specific subjects and share none of them
("different subject: Sbarro vs Gox"). Shared specific names are the evidence an
explanation reports.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from newswatch.grouping.text import ALIASES, STOPWORDS, fold, headline_names, words_of

# The frequency list of common English words, and how many of its most frequent words are
# common (chosen on the tuning halves: fewer let everyday words of title-case headlines
# pass for names, "Tote", "Recap").
COMMON_WORDS_FILE = Path(__file__).with_name("data") / "common-words-en.txt"
COMMON_WORDS_COUNT = 30_000
# Titles, roles and company designators, abbreviated ("Sen", "CEO", "Inc", "Mt"): written
# beside names, never names themselves (decision 0179).
NAME_AFFIXES_FILE = Path(__file__).with_name("data") / "name-affixes-en.txt"
# Inflectional endings and what restores the base word: a title-case headline's "Leverages"
# or "Bossier" is an everyday word when "leverage" or "bossy" is one. Only endings that keep
# a verb, a plural or a comparative (not "-er" of nouns: Baker, Cooper are surnames), longest
# first.
INFLECTIONS = (
    ("iest", "y"),
    ("ier", "y"),
    ("ies", "y"),
    ("ied", "y"),
    ("ing", ""),
    ("ing", "e"),
    ("es", ""),
    ("ed", ""),
    ("ed", "e"),
    ("s", ""),
)
# Shortest base an inflection may leave ("Bing" is no inflection of "b").
INFLECTION_BASE = 3
# Shortest name that, found inside another, makes them one name written two ways.
NAME_PART_LETTERS = 3
# Punctuation that ends a sentence inside a title, and the word that starts the next.
SENTENCE_MARKS = re.compile(r"[.!?:;…]\s")
SENTENCE_START = re.compile(r"[.!?:;…]['\"”’)\]]*\s+['\"“‘(\[]*([^\W\d_][^\W_]*)")
# Remembered answers of the stream-independent part of is_common (cleared when full; a
# few MB at most: the grouping window's memory is budgeted, issue 15).
LISTED_MEMO_MAX = 20_000
# Share of a title's words (of 4+ letters) capitalised above which it is in title case.
TITLE_CASE_SHARE = 0.6
# A word written in lower case at least this share of the times it was seen mid-sentence is
# a common word, whatever its case in one headline.
LOWER_SHARE = 0.3
# Words of a title whose case is counted.
OBSERVED_WORDS = 24
# Words whose case counts are kept before the counts are halved (memory stays flat).
CASE_COUNTS_MAX = 200_000
# An entity posted under more live events than this is too common to tell events apart.
COMMON_EVENTS = 3
# An event's subjects: its specific entities weighing at least this share of its heaviest,
# looked for among its SUBJECT_CANDIDATES heaviest entities.
SUBJECT_SHARE = 0.5
SUBJECT_CANDIDATES = 8
# Shared terms of two events whose commonness is checked before a merge (the heaviest
# products of the cosine: the rest barely moves it).
SHARED_TERMS_CHECKED = 8
# Shared specific terms an explanation names (the heaviest; one is enough to join).
EVIDENCE_NAMED = 4
# A term posted under more live events than this is a topic (Google, bankruptcy), and counts
# nothing towards merging two events: half of what a posting list holds (POSTING_DEPTH, 32,
# in cluster.py). Not tuned: on the UCI tuning half every value from 8 to 31 gave the same
# F1 (3 lost 0.06: fragments of one story make its own terms common).
TOPIC_EVENTS = 16


def load_common_words(
    path: Path = COMMON_WORDS_FILE, count: int = COMMON_WORDS_COUNT
) -> frozenset[str]:
    """Corpus-independent common English words: the project's stopwords and the `count`
    most frequent words of a general English frequency list (data/README.md names its
    source), one a line, most frequent first."""
    with path.open(encoding="utf-8") as f:
        listed = [line.strip() for _, line in zip(range(count), f, strict=False)]
    return frozenset(STOPWORDS).union(w for w in listed if w)


def load_word_list(path: Path) -> frozenset[str]:
    """The lower-case words of a data file, one a line; "#" starts a comment."""
    with path.open(encoding="utf-8") as f:
        return frozenset(word.lower() for line in f if (word := line.split("#", 1)[0].strip()))


COMMON_WORDS = load_common_words()
NAME_AFFIXES = load_word_list(NAME_AFFIXES_FILE)


def strip_possessive(low: str) -> str:
    """A possessive is its name: "gox's" -> "gox"."""
    return low[:-2] if low.endswith(("'s", "’s")) else low


def is_inflection_of_common(low: str) -> bool:
    """Whether a lower-case word is an inflected form of a common word ("leverages",
    "bossier", "unveiling")."""
    return any(
        low.endswith(ending)
        and len(low) - len(ending) + len(base) >= INFLECTION_BASE
        and low[: -len(ending)] + base in COMMON_WORDS
        for ending, base in INFLECTIONS
    )


def is_acronym(word: str) -> bool:
    """Initials rather than a word: at least two capitals, and capitals at least half the
    letters once a possessive or plural "s" is set aside ("USB", "BoE", "MPs", "CEO's"; not
    "CarPlay", "UniCredit")."""
    core = strip_possessive(word)
    if core.endswith("s") and len(core) > 2:
        core = core[:-1]
    capitals = sum(c.isupper() for c in core)
    return capitals >= 2 and 2 * capitals >= sum(c.isalpha() for c in core)


# How a veto's reason starts (the rest names the two sides' subjects).
VETO_PREFIX = "different subject"


@dataclass(frozen=True, slots=True)
class Veto:
    """Why a join or merge was refused: the two sides' specific subjects."""

    ours: tuple[str, ...]
    theirs: tuple[str, ...]

    def reason(self) -> str:
        return f"{VETO_PREFIX}: {', '.join(self.ours)} vs {', '.join(self.theirs)}"


def veto_of(ours: Iterable[str], theirs: Iterable[str]) -> Veto | None:
    """The veto of a join whose two sides name these subjects, unless a name of one side is
    part of a name of the other: one name written two ways ("MtGox" and "Gox", "Obama" and
    "Obamacare" are no different subjects to be sure of)."""
    veto = Veto(tuple(ours), tuple(theirs))
    mine = [strip_possessive(fold(n)) for n in veto.ours]
    other = [strip_possessive(fold(n)) for n in veto.theirs]
    for a in mine:
        for b in other:
            if min(len(a), len(b)) >= NAME_PART_LETTERS and (a in b or b in a):
                return None
    return veto


class NameFinder:
    """Which capitalised words of a headline are names: learnt from the stream's case use."""

    def __init__(self) -> None:
        # Folded word -> [times seen in lower case, times capitalised mid-sentence].
        self.case: dict[str, list[int]] = {}
        # Word as written -> whether the lists make it common (see _listed).
        self.listed: dict[str, bool] = {}

    def observe(self, title: str) -> None:
        """Count the case of each word of a sentence-case title that does not start a
        sentence (of its first OBSERVED_WORDS: a long first sentence standing for a title
        says no more)."""
        words = words_of(title, OBSERVED_WORDS)
        if len(words) < 3 or _title_case(words):
            return
        # A word that starts a later sentence ("Ban Bossy? I Don't Think So. Be Bossier.")
        # is capitalised whatever it is: its case says nothing either.
        starts = set(SENTENCE_START.findall(title)) if SENTENCE_MARKS.search(title) else ()
        case = self.case
        for word in words[1:]:
            if word in starts:
                continue
            low = word.lower()
            counts = case.get(low)
            if counts is None:
                if len(case) >= CASE_COUNTS_MAX:
                    self._halve()
                    case = self.case
                counts = case[low] = [0, 0]
            counts[word[0].isupper()] += 1

    def _halve(self) -> None:
        self.case = {w: [c[0] // 2, c[1] // 2] for w, c in self.case.items() if sum(c) > 1}

    def is_common(self, word: str) -> bool:
        """A common word, no name: in the list (or inflected from a word in it), a title or
        company designator, or written in lower case by the stream often enough. A
        possessive is its name; a compound is common when a part is ("Android-based") or is
        written in lower case (an adjective: "OEM-agnostic")."""
        if self._listed(word):
            return True
        counts = self.case.get(word.lower())
        return counts is not None and counts[0] >= LOWER_SHARE * (counts[0] + counts[1])

    def _listed(self, word: str) -> bool:
        """The stream-independent part of is_common, remembered."""
        known = self.listed.get(word)
        if known is None:
            low = strip_possessive(fold(word))
            known = (
                low in COMMON_WORDS
                or low in NAME_AFFIXES
                or any(p in COMMON_WORDS for p in low.split("-"))
                or ("-" in word and any(p[:1].islower() for p in word.split("-")))
                or (not word.isupper() and is_inflection_of_common(low))
            )
            if len(self.listed) >= LISTED_MEMO_MAX:
                self.listed.clear()
            self.listed[word] = known
        return known

    def is_subject(self, word: str) -> bool:
        """A name that can tell what a headline is about: no common word, and neither
        initials ("USB", "BoE": a thing or a body written many ways, which a report may
        spell out) nor a code with digits ("Q4", "MH370": part of a story, not its
        protagonist), unless the alias table names it (a country: "UK", "DPRK")."""
        if self.is_common(word):
            return False
        if any(c.isdigit() for c in word) or is_acronym(word):
            return fold(strip_possessive(word)) in ALIASES
        return True

    def names(self, title: str) -> dict[str, str]:
        """The title's subjects: entity key -> surface form, of the names that are
        subjects (is_subject). A headline's first word is capitalised whatever it is: it
        counts when it is no common word, like any other ("Sbarro files for bankruptcy")."""
        return {k: s for k, s in headline_names(title).items() if self.is_subject(s)}


def _title_case(words: list[str]) -> bool:
    long = [w for w in words if len(w) >= 4 and w[:1].isalpha()]
    if not long:
        return False
    return sum(w[0].isupper() for w in long) >= TITLE_CASE_SHARE * len(long)


def is_specific(
    postings: Mapping[int, Iterable[int]],
    live: Callable[[int], int | None],
    term: int,
    exclude: set[int],
    common_events: int = COMMON_EVENTS,
) -> bool:
    """Whether at most `common_events` live events besides `exclude` (the events compared,
    whose own protagonist is not common because they grew) are posted under `term`. A
    posting keeps its newest few events: past them a term is common anyway."""
    posting = postings.get(term)
    if posting is None:
        return True
    distinct = set(posting)
    distinct -= exclude
    if len(distinct) <= common_events:
        return True  # too few entries to be common, whatever they resolve to
    found: set[int] = set()
    for event_id in distinct:
        event = live(event_id)
        if event is not None and event not in exclude:
            found.add(event)
            if len(found) > common_events:
                return False
    return True


# Reports of a group that must state its year before the group counts as dated.
DATED_REPORTS = 2
# Share of a group's reports that may state the other group's year with the groups still
# dated apart (a report recalls an earlier year: "the 2004 tsunami").
OTHER_YEAR_SHARE = 0.25


def main_year(years: list[frozenset[str]]) -> str | None:
    """The year the most reports of a group state (ties: the latest), when at least
    DATED_REPORTS state it; else None. `years`: each report's year figures."""
    counts = Counter(y for stated in years for y in stated)
    if not counts:
        return None
    year, n = max(counts.items(), key=lambda yn: (yn[1], yn[0]))
    return year if n >= DATED_REPORTS else None


def dated_apart(a: list[frozenset[str]], b: list[frozenset[str]]) -> bool:
    """Whether two groups of reports tell of two years: each group's main year differs, and
    few reports of each state the other's. Two castings of one role, two elections of one
    parliament name the same people and places; the year they happen in is what differs."""
    ya, yb = main_year(a), main_year(b)
    if ya is None or yb is None or ya == yb:
        return False
    a_recalls = sum(yb in s for s in a)
    b_recalls = sum(ya in s for s in b)
    return a_recalls <= OTHER_YEAR_SHARE * len(a) and b_recalls <= OTHER_YEAR_SHARE * len(b)


# What the similarity of two reports keeps when both state years and none in common: the
# conflict halves it rather than cutting it (a report may recall only an earlier year).
YEAR_CONFLICT_AFFINITY = 0.5


def year_agreement(years: list[frozenset[str]]) -> np.ndarray | None:
    """A factor for each pair of reports' similarity: YEAR_CONFLICT_AFFINITY when both
    state years and none in common ("2013" against "2009, 2010"), else 1. None when fewer
    than two years are stated among them (most events); with two or more, the matrix may
    hold only ones (every pair that states years shares one)."""
    stated = sorted(set().union(*years))
    if len(stated) < 2:
        return None
    column = {y: j for j, y in enumerate(stated)}
    incidence = np.zeros((len(years), len(stated)))
    for i, ys in enumerate(years):
        incidence[i, [column[y] for y in ys]] = 1.0
    dated = incidence.any(axis=1)
    conflict = np.outer(dated, dated) & ((incidence @ incidence.T) == 0)
    return np.where(conflict, YEAR_CONFLICT_AFFINITY, 1.0)
