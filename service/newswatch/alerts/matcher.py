"""All rules compiled into one matcher.

Evaluating a thousand queries on every article would cost milliseconds. Instead each query is
reduced to its clauses: sets of words (or prefixes), each tagged with the fields it is looked
for in, of which a matching article must contain at least one, every clause at once
(`(a OR b) AND title:c*` needs {a, b} and {title:c*}). One Aho-Corasick automaton over every
rule's words scans the article's words once (in C) and collects the clauses hit.

A rule with all its clauses hit is a candidate. Most rules are a plain AND of ORs of terms,
maybe with NOT parts: for those the hit clauses are the match, and only the NOT parts are
evaluated. Other rules (phrases, nested logic) are evaluated in full, and rules that need no
word at all (`NOT sport`) on every article.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter

import ahocorasick

from newswatch.alerts.query import (
    And,
    Document,
    Leaf,
    Node,
    Not,
    Or,
    Phrase,
    Term,
    evaluate,
    positive_leaves,
    present,
)

# A field set's tag in the automaton: a character no word contains, put before each word.
TAGS = {
    ("title", "text"): "\x01",
    ("title",): "\x02",
    ("text",): "\x03",
    ("source",): "\x04",
    ("lang",): "\x05",
}
_second = itemgetter(1)
Trigger = tuple[str, str, bool]  # (tag, word, is a prefix)
Clause = frozenset[Trigger]


def clauses(node: Node) -> list[Clause]:
    """Word sets a matching article hits, each at least once; [] when no word is needed."""
    if isinstance(node, Term):
        return [frozenset({(TAGS[node.fields], node.word, node.prefix)})]
    if isinstance(node, Phrase):
        tag = TAGS[node.fields]
        return [frozenset({(tag, word, False)}) for word in dict.fromkeys(node.words)]
    if isinstance(node, Not):
        return []
    if isinstance(node, And):
        out = [c for child in node.children for c in clauses(child)]
        return list(dict.fromkeys(out))
    union: set[Trigger] = set()
    for child in node.children:
        found = clauses(child)
        if not found:
            return []  # an alternative that needs no word: nothing is needed
        union |= min(found, key=len)  # the narrowest requirement of that alternative
    return [frozenset(union)]


def triggers(node: Node) -> frozenset[tuple[str, str]] | None:
    """The narrowest clause as ("w", word) / ("p", prefix): an article matching `node`
    contains one of these."""
    found = clauses(node)
    if not found:
        return None
    return frozenset(("p" if prefix else "w", word) for _tag, word, prefix in min(found, key=len))


def _is_disjunction(node: Node) -> bool:
    """A term, or an OR of terms: its clause is hit exactly when it matches."""
    if isinstance(node, Term):
        return True
    return isinstance(node, Or) and all(isinstance(c, Term) for c in node.children)


def checks(node: Node) -> tuple[tuple[Node, ...], tuple[Node, ...]] | None:
    """What is left to evaluate once every clause of `node` is hit: the parts that must match
    and the parts that must not (an AND's NOT parts). Disjunctions of terms need nothing:
    their clause is hit exactly when they match. None: evaluate the whole query."""
    if _is_disjunction(node):
        return (), ()
    if not isinstance(node, And):
        return None
    positive = [c for c in node.children if not isinstance(c, Not)]
    if not positive:
        return None
    must = tuple(c for c in positive if not _is_disjunction(c))
    must_not = tuple(c.child for c in node.children if isinstance(c, Not))
    return must, must_not


def _key(trigger: Trigger) -> str:
    """The automaton key: the field tag, then the word and its end (a prefix has none)."""
    tag, word, prefix = trigger
    return f"{tag}{word}" if prefix else f"{tag}{word} "


@dataclass(frozen=True)
class CompiledRule:
    name: str
    query: Node
    # The query's positive words and phrases, found once (query.present explains a match).
    leaves: list[Leaf] = field(init=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "leaves", positive_leaves(self.query))


class RuleSet:
    """Match an article against every rule at once."""

    def __init__(self, rules: Iterable[CompiledRule]):
        self.rules = list(rules)
        count = len(self.rules)
        # Every clause has an id; rule i's anchor clause (its narrowest) has id i, so the
        # anchors hit are the rules worth looking at. A rule is a candidate when all its
        # clauses are hit and none of its forbidden ones (NOT parts that are disjunctions).
        self.always: list[int] = []
        self.anchored = frozenset(range(count))
        self.simple: set[int] = set()  # one clause, nothing forbidden: the anchor decides
        self.required: list[frozenset[int]] = []
        self.forbidden: list[frozenset[int]] = []
        self.checks: list[tuple[tuple[Node, ...], tuple[Node, ...]] | None] = []
        self.tags: set[str] = set()
        self._postings: dict[str, list[int]] = defaultdict(list)
        self._next_id = count
        for i, rule in enumerate(self.rules):
            self._add(i, rule.query)
        self.automaton: ahocorasick.Automaton | None = None
        if self._postings:
            self.automaton = ahocorasick.Automaton()
            for key, clause_ids in self._postings.items():
                self.automaton.add_word(key, tuple(clause_ids))
            self.automaton.make_automaton()

    def _register(self, clause: Clause, clause_id: int | None = None) -> int:
        if clause_id is None:
            clause_id, self._next_id = self._next_id, self._next_id + 1
        for trigger in clause:
            self.tags.add(trigger[0])
            self._postings[_key(trigger)].append(clause_id)
        return clause_id

    def _add(self, i: int, query: Node) -> None:
        found = clauses(query)
        plan = checks(query) if found else None
        forbidden: list[int] = []
        if plan is not None:
            must, must_not = plan
            exact = [n for n in must_not if _is_disjunction(n)]
            forbidden = [self._register(clauses(n)[0]) for n in exact]
            plan = must, tuple(n for n in must_not if not _is_disjunction(n))
        self.checks.append(plan)
        self.forbidden.append(frozenset(forbidden))
        if not found:
            self.always.append(i)
            self.required.append(frozenset())
            return
        anchor = min(found, key=len)
        required = {self._register(anchor, i)}
        required.update(self._register(c) for c in found if c != anchor)
        self.required.append(frozenset(required))
        if len(required) == 1 and not forbidden:
            self.simple.add(i)

    def _haystack(self, doc: Document) -> str:
        """Each field's words, tagged as the rules look for them: "\\x01word \\x01other "."""
        parts = []
        for fields, tag in TAGS.items():
            if tag not in self.tags:
                continue
            for name in fields:  # a word in title and text is hit twice: harmless
                if found := doc.sets.get(name):
                    parts.append(tag + f" {tag}".join(found) + " ")
        return "".join(parts)

    def candidates(self, doc: Document) -> set[int]:
        """Rules with every clause hit by the document (a superset of the matching rules)."""
        out = set(self.always)
        if self.automaton is None:
            return out
        # Written with map/chain so that the loop over the hits runs in C.
        hit = set(chain.from_iterable(map(_second, self.automaton.iter(self._haystack(doc)))))
        touched = hit & self.anchored
        out |= touched & self.simple
        required, forbidden = self.required, self.forbidden
        out.update(
            i for i in touched - self.simple if required[i] <= hit and forbidden[i].isdisjoint(hit)
        )
        return out

    def explain(self, doc: Document) -> list[tuple[CompiledRule, list[str]]]:
        """The rules whose query matches `doc`, in configuration order, each with the
        spellings of its positive words and phrases that `doc` holds, in the query's order
        (`query.present`)."""
        return [(rule, present(rule.leaves, doc)) for rule in self.match(doc)]

    def match(self, doc: Document) -> list[CompiledRule]:
        """The rules whose query matches `doc`, in configuration order."""
        out = []
        for i in sorted(self.candidates(doc)):
            left = self.checks[i]
            if left is None:
                if evaluate(self.rules[i].query, doc):
                    out.append(self.rules[i])
                continue
            must, must_not = left
            if (not must or all(evaluate(n, doc) for n in must)) and (
                not must_not or not any(evaluate(n, doc) for n in must_not)
            ):
                out.append(self.rules[i])
        return out
