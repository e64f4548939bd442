"""The rule query language: parsed once, evaluated against many articles.

    (Belousov OR "defence minister") AND (DPRK OR "North Korea") NOT sport*
    title:sanction* source:reuters lang:en

Terms match whole words; a trailing `*` matches any word starting with the prefix; "quoted
phrases" match consecutive words. Adjacent parts are ANDed; `NOT x` (or `-x`) excludes;
AND binds tighter than OR. Field prefixes: title:, text:, source:, lang:; a bare term searches
title and text. Matching ignores case and accents ("Pyongyang" = "pyongyang", "Kyiv" = "kyïv").
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass, field
from functools import lru_cache

from newswatch.errors import InputError
from newswatch.grouping.text import fold

FIELDS = ("title", "text", "source", "lang")
DEFAULT_FIELDS = ("title", "text")
# A word is a run of \w characters. The ASCII ranges listed first add nothing to \w; they
# answer most characters of news text from a bitmap before the Unicode lookup \w costs.
_WORD = re.compile(r"[0-9A-Za-z_\w]+")
# The same \w on ASCII-only text, answered from a table throughout (a quarter cheaper).
_ASCII_WORD = re.compile(r"\w+", re.ASCII)
_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


class QueryError(InputError):
    """A query that does not parse; `column` counts from 1. Its `where` is "col N", so
    `str()` is "col N: message" (a ValueError as before, through InputError)."""

    def __init__(self, column: int, message: str):
        super().__init__(message, where=f"col {column}")
        self.column = column


_ASCII_BYTES = bytes(range(128))


def _non_ascii(text: str) -> str:
    """The non-ASCII characters of `text`: its UTF-8 bytes without the ASCII ones (a C loop;
    the bytes of a non-ASCII character are all >= 0x80, so each stays whole)."""
    raw = text.encode("utf-8", "surrogatepass").translate(None, _ASCII_BYTES)
    return raw.decode("utf-8", "surrogatepass")


@lru_cache(maxsize=200_000)
def _fold_word(word: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(fold(word)))


def words(text: str) -> list[str]:
    """The folded words of `text`. Only words with non-ASCII letters are decomposed (and
    remembered: names recur), which keeps long texts cheap."""
    if text.isascii():
        return _ASCII_WORD.findall(text.lower())
    # Marks NFC cannot compose onto their letter ("а́") would split the word: drop them.
    text = _MARKS.sub("", unicodedata.normalize("NFC", text))
    if _WORD.search(_non_ascii(text)) is None:
        # Most such text is English with typographic quotes and dashes: every non-ASCII
        # character parts words, as a "?" does, and the words are ASCII (decision 0233).
        return _ASCII_WORD.findall(text.encode("ascii", "replace").decode("ascii").lower())
    out: list[str] = []
    for word in _WORD.findall(text):
        if word.isascii():
            out.append(word.lower())
        else:
            out.extend(_fold_word(word))
    return out


# --- the syntax tree ------------------------------------------------------------------
@dataclass(frozen=True)
class Term:
    fields: tuple[str, ...]
    word: str
    prefix: bool = False  # trailing wildcard


@dataclass(frozen=True)
class Phrase:
    fields: tuple[str, ...]
    words: tuple[str, ...]


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


Node = Term | Phrase | Not | And | Or


# --- documents ------------------------------------------------------------------------
@dataclass
class Document:
    """An article as queries see it: each field's folded words, as a list and as a set."""

    lists: dict[str, list[str]] = field(default_factory=dict)
    sets: dict[str, frozenset[str]] = field(default_factory=dict)
    _sorted: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, **fields: str | None) -> Document:
        doc = cls()
        for name, value in fields.items():
            tokens = words(value or "")
            doc.lists[name] = tokens
            doc.sets[name] = frozenset(tokens)
        return doc

    def has_prefix(self, name: str, prefix: str) -> bool:
        """Whether a word of field `name` starts with `prefix` (a binary search)."""
        ordered = self._sorted.get(name)
        if ordered is None:
            ordered = self._sorted[name] = sorted(self.sets.get(name, ()))
        i = bisect_left(ordered, prefix)
        return i < len(ordered) and ordered[i].startswith(prefix)

    def all_words(self) -> frozenset[str]:
        out: set[str] = set()
        for tokens in self.sets.values():
            out |= tokens
        return frozenset(out)


def evaluate(node: Node, doc: Document) -> bool:
    if isinstance(node, Term):
        if not node.prefix:
            return _has_word(doc, node)
        for name in node.fields:  # noqa: SIM110 (a loop: any() of a generator costs more)
            if doc.has_prefix(name, node.word):
                return True
        return False
    if isinstance(node, Phrase):
        return any(_has_phrase(doc, name, node.words) for name in node.fields)
    if isinstance(node, Not):
        return not evaluate(node.child, doc)
    if isinstance(node, And):
        return all(evaluate(c, doc) for c in node.children)
    return any(evaluate(c, doc) for c in node.children)


def _has_word(doc: Document, term: Term) -> bool:
    """Whether a field of `term` holds its word (a whole word: a set lookup)."""
    sets = doc.sets
    for name in term.fields:  # noqa: SIM110 (a loop: any() of a generator costs more)
        if term.word in sets.get(name, _NO_WORDS):
            return True
    return False


_NO_WORDS: frozenset[str] = frozenset()


def _has_phrase(doc: Document, name: str, phrase: tuple[str, ...]) -> bool:
    tokens = doc.lists.get(name, [])
    if not phrase or not doc.sets.get(name, frozenset()).issuperset(phrase):
        return False
    n = len(phrase)
    first = phrase[0]
    for i, token in enumerate(tokens):
        if token == first and tuple(tokens[i : i + n]) == phrase:
            return True
    return False


def positive_terms(node: Node) -> list[str]:
    """Words (and `prefix*`) that made a match, for explanations."""
    if isinstance(node, Term):
        return [node.word + ("*" if node.prefix else "")]
    if isinstance(node, Phrase):
        return ['"' + " ".join(node.words) + '"']
    if isinstance(node, Not):
        return []
    return [t for c in node.children for t in positive_terms(c)]


Leaf = tuple["Term | Phrase", str]  # a positive word or phrase of a query, and its spelling


def positive_leaves(node: Node) -> list[Leaf]:
    """The words and phrases of `node` outside a NOT, in order, each with its spelling."""
    if isinstance(node, Term | Phrase):
        return [(node, positive_terms(node)[0])]
    if isinstance(node, Not):
        return []
    return [leaf for c in node.children for leaf in positive_leaves(c)]


def present(leaves: list[Leaf], doc: Document) -> list[str]:
    """The spellings of the `leaves` found in `doc`. A whole word (most words of most rules)
    is looked up directly, without `evaluate`'s dispatch on the kind of node: an article
    matches ~25 of 1,000 rules, and each match is explained (decision 0226)."""
    out = []
    for leaf, spelled in leaves:
        if leaf.__class__ is Term and not leaf.prefix:
            if _has_word(doc, leaf):
                out.append(spelled)
        elif evaluate(leaf, doc):
            out.append(spelled)
    return out


def matched_terms(node: Node, doc: Document) -> list[str]:
    """The positive parts of `node` that are present in `doc` (a rule compiled once keeps
    its leaves: matcher.CompiledRule.leaves, used with `present`)."""
    return present(positive_leaves(node), doc)


# --- parsing --------------------------------------------------------------------------
@dataclass
class _Token:
    kind: str  # "(" ")" AND OR NOT WORD PHRASE
    text: str
    column: int
    field: str | None = None


_LEX = re.compile(
    r'\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<minus>-)(?=[\w"])'
    r'|(?:(?P<field>[A-Za-z]+):)?(?:"(?P<phrase>[^"]*)(?P<close>")?|(?P<word>[^\s()"]+)))',
    re.UNICODE,
)


def _tokens(query: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(query):
        if query[pos:].strip() == "":
            break
        m = _LEX.match(query, pos)
        if m is None or m.end() == pos:
            raise QueryError(pos + 1, f"unexpected {query[pos]!r}")
        column = m.start() + len(m.group(0)) - len(m.group(0).lstrip()) + 1
        pos = m.end()
        if m.group("lp"):
            out.append(_Token("(", "(", column))
        elif m.group("rp"):
            out.append(_Token(")", ")", column))
        elif m.group("minus"):
            out.append(_Token("NOT", "-", column))
        else:
            field_name = m.group("field")
            if field_name is not None and field_name.lower() not in FIELDS:
                raise QueryError(
                    column, f"unknown field {field_name!r} (fields: {', '.join(FIELDS)})"
                )
            field_name = field_name.lower() if field_name else None
            if m.group("phrase") is not None:
                if m.group("close") is None:
                    raise QueryError(column, 'unmatched """')
                out.append(_Token("PHRASE", m.group("phrase"), column, field_name))
            else:
                word = m.group("word")
                if field_name is None and word in ("AND", "OR", "NOT"):
                    out.append(_Token(word, word, column))
                else:
                    out.append(_Token("WORD", word, column, field_name))
    return out


# Parentheses and NOTs nest at most this deep: the parser and `evaluate` recurse once a level
# (5,000 "(" were a RecursionError); no rule a person writes comes near it.
MAX_NESTING = 100


class _Parser:
    """query := or ; or := and (OR and)* ; and := unary (AND? unary)* ;
    unary := NOT unary | ( or ) | WORD | PHRASE"""

    def __init__(self, query: str):
        self.query = query
        self.tokens = _tokens(query)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def end_column(self) -> int:
        return len(self.query) + 1

    def parse(self) -> Node:
        if not self.tokens:
            raise QueryError(1, "empty query")
        node = self.parse_or()
        extra = self.peek()
        if extra is not None:
            if extra.kind == ")":
                raise QueryError(extra.column, 'unmatched ")"')
            raise QueryError(extra.column, f"unexpected {extra.text!r}")
        return node

    def parse_or(self) -> Node:
        parts = [self.parse_and()]
        while (token := self.peek()) is not None and token.kind == "OR":
            self.take()
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def parse_and(self) -> Node:
        parts = [self.parse_unary()]
        while (token := self.peek()) is not None and token.kind not in ("OR", ")"):
            if token.kind == "AND":
                self.take()
            parts.append(self.parse_unary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def parse_unary(self) -> Node:
        token = self.peek()
        if token is None:
            raise QueryError(self.end_column(), "expected a term at the end of the query")
        if token.kind in ("NOT", "("):
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise QueryError(token.column, f"nested deeper than {MAX_NESTING} levels")
            node = self.parse_not() if token.kind == "NOT" else self.parse_group()
            self.depth -= 1
            return node
        if token.kind in ("AND", "OR", ")"):
            what = 'unmatched ")"' if token.kind == ")" else f"{token.text} needs a term before it"
            raise QueryError(token.column, what)
        self.take()
        fields = (token.field,) if token.field else DEFAULT_FIELDS
        if token.kind == "PHRASE":
            phrase = tuple(words(token.text))
            if not phrase:
                raise QueryError(token.column, "empty phrase")
            return Phrase(fields, phrase)
        return self.word(token, fields)

    def parse_not(self) -> Node:
        self.take()
        return Not(self.parse_unary())

    def parse_group(self) -> Node:
        opening = self.take()
        if (inner := self.peek()) is not None and inner.kind == ")":
            raise QueryError(inner.column, "empty parentheses")
        node = self.parse_or()
        closing = self.peek()
        if closing is None or closing.kind != ")":
            raise QueryError(opening.column, 'unmatched "("')
        self.take()
        return node

    def word(self, token: _Token, fields: tuple[str, ...]) -> Node:
        text = token.text
        prefix = text.endswith("*")
        if prefix:
            text = text[:-1]
        if "*" in text:
            raise QueryError(token.column, "a wildcard may only end a term")
        parts = words(text)
        if not parts:
            raise QueryError(token.column, f"{token.text!r} has no letters or digits")
        if len(parts) > 1:  # "U.S." or "al-Assad": the words in sequence
            if prefix:
                raise QueryError(token.column, "a wildcard may only end a single word")
            return Phrase(fields, tuple(parts))
        return Term(fields, parts[0], prefix)


def parse(query: str) -> Node:
    """The syntax tree of `query`, or QueryError with the column of the problem."""
    return _Parser(query).parse()
