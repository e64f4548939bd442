"""All rules compiled into one matcher.

Evaluating a thousand queries on every article would cost milliseconds; instead each query
yields the words one of which an article must contain for it to match at all (its triggers).
One Aho-Corasick automaton over every rule's triggers scans the article's words once (in C)
and names the few rules worth evaluating. Queries that can match without any word
(`NOT sport`) are always evaluated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import ahocorasick

from newswatch.alerts.query import And, Document, Node, Not, Phrase, Term, evaluate

Trigger = tuple[str, str]  # ("w", word) or ("p", prefix)


def triggers(node: Node) -> frozenset[Trigger] | None:
    """Words of which a matching article contains at least one; None: no such set."""
    if isinstance(node, Term):
        return frozenset({("p" if node.prefix else "w", node.word)})
    if isinstance(node, Phrase):
        # The rarest-looking word of the phrase: the longest one.
        return frozenset({("w", max(node.words, key=len))})
    if isinstance(node, Not):
        return None
    if isinstance(node, And):
        sets = [t for c in node.children if (t := triggers(c)) is not None]
        return min(sets, key=len) if sets else None
    union: set[Trigger] = set()
    for child in node.children:
        t = triggers(child)
        if t is None:
            return None
        union |= t
    return frozenset(union)


def _key(trigger: Trigger) -> str:
    """The automaton key: words are matched whole, prefixes at a word's start."""
    kind, word = trigger
    return f" {word} " if kind == "w" else f" {word}"


@dataclass(frozen=True)
class CompiledRule:
    name: str
    query: Node


class RuleSet:
    """Match an article against every rule at once."""

    def __init__(self, rules: Iterable[CompiledRule]):
        self.rules = list(rules)
        self.always: list[int] = []
        by_key: dict[str, list[int]] = defaultdict(list)
        for i, rule in enumerate(self.rules):
            found = triggers(rule.query)
            if found is None:
                self.always.append(i)
                continue
            for trigger in found:
                by_key[_key(trigger)].append(i)
        self.automaton: ahocorasick.Automaton | None = None
        if by_key:
            self.automaton = ahocorasick.Automaton()
            for key, indexes in by_key.items():
                self.automaton.add_word(key, tuple(indexes))
            self.automaton.make_automaton()

    def candidates(self, doc: Document) -> set[int]:
        """Rules whose triggers the document contains (a superset of the matching rules)."""
        out = set(self.always)
        if self.automaton is not None:
            haystack = " " + " ".join(doc.all_words()) + " "
            for _end, indexes in self.automaton.iter(haystack):
                out.update(indexes)
        return out

    def match(self, doc: Document) -> list[CompiledRule]:
        """The rules whose query matches `doc`, in configuration order."""
        return [
            self.rules[i]
            for i in sorted(self.candidates(doc))
            if evaluate(self.rules[i].query, doc)
        ]
