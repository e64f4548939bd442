"""Reading YAML that may be hostile, fast: libyaml once, after a pre-scan of its events.

The config file is read with PyYAML's C loader (`CSafeLoader`, when PyYAML was built with
libyaml): the pure-Python loader was a fifth of a 10,000-source poll cycle. Before anything is
built, one pass over the parser's events (`check_shape`) refuses

- nesting deeper than MAX_DEPTH: libyaml's composer recurses in C (a million `[` crash the
  process), PyYAML's in Python (a RecursionError), and libyaml's scanner slows down
  quadratically with flow depth; the pass stops at the first event past the limit;
- aliases that expand the document by more than ALIAS_FACTOR times its own size (within
  ALIAS_FLOOR and ALIAS_CEILING nodes): an "alias bomb" of a few lines stands for billions of
  nodes once anything walks it (expanding ${VAR}s, validating).
  Counting the expansion, not the aliases, keeps `<<: *defaults` on thousands of sources;
- an alias inside the collection it names (a recursive structure nothing downstream ends).

Line numbers of paths (`line_index`) need the node graph: it is composed only when an error
needs a line. Figures and the alternatives measured: docs/decisions/0061-config-yaml-loader.md.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)

LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Our config is four levels deep (sources, a source, its tags, a tag); the margin is for
# other YAML a user writes, e.g. nested anchors.
MAX_DEPTH = 64
# Nodes aliases may add: ALIAS_FACTOR times the nodes written, at least ALIAS_FLOOR, at most
# ALIAS_CEILING. (`<<: *defaults` with three keys on sources of two adds ~1.7 times.)
ALIAS_FACTOR = 10
ALIAS_FLOOR = 10_000
ALIAS_CEILING = 1_000_000

_OPENS = (MappingStartEvent, SequenceStartEvent)
_CLOSES = (MappingEndEvent, SequenceEndEvent)


class YamlProblem(Exception):
    """Unreadable or refused YAML; `line` counts from 1 (None when unknown)."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line


def load(text: str) -> Any:
    """The data of one YAML document, or YamlProblem naming the line."""
    try:
        check_shape(text)
        return yaml.load(text, Loader=LOADER)  # LOADER is a safe loader
    except yaml.YAMLError as exc:
        raise _syntax_problem(text, exc) from None
    except UnicodeEncodeError as exc:  # a lone surrogate cannot go to libyaml as UTF-8
        line = text.count("\n", 0, exc.start) + 1
        raise YamlProblem(f"character {text[exc.start]!r} is not Unicode text", line) from None
    except (ValueError, OverflowError) as exc:
        raise _unconstructable(text, exc) from None


def check_shape(text: str) -> None:
    """Refuse deep nesting, alias bombs and recursive aliases (see the module docstring)."""
    sizes = [0]  # nodes of each open collection; the document at the bottom
    anchors: list[str | None] = [None]  # the anchor of each open collection
    anchored: dict[str, int] = {}  # nodes behind each finished anchor
    written = expanded = 0
    for event in yaml.parse(text, Loader=LOADER):
        if isinstance(event, ScalarEvent):
            written += 1
            sizes[-1] += 1
            if event.anchor:
                anchored[event.anchor] = 1
        elif isinstance(event, _OPENS):
            if len(sizes) > MAX_DEPTH:
                raise YamlProblem(f"nested deeper than {MAX_DEPTH} levels", _line(event))
            written += 1
            sizes.append(1)
            anchors.append(event.anchor)
        elif isinstance(event, _CLOSES):
            size = sizes.pop()
            anchor = anchors.pop()
            if anchor:
                anchored[anchor] = size
            sizes[-1] += size
        elif isinstance(event, AliasEvent):
            aliased = anchored.get(event.anchor or "")
            if aliased is None:
                if event.anchor in anchors:
                    raise YamlProblem(
                        f"alias *{event.anchor} is inside the collection it names (it contains it)",
                        _line(event),
                    )
                continue  # an undefined alias: the loader names it
            expanded += aliased
            sizes[-1] += aliased
            budget = min(ALIAS_CEILING, max(ALIAS_FLOOR, ALIAS_FACTOR * written))
            if expanded > budget:
                raise YamlProblem(
                    f"alias *{event.anchor}: aliases expand the document past"
                    f" {written + expanded:,} nodes from {written:,} written (an alias bomb?"
                    f" aliases may add {budget:,} here)",
                    _line(event),
                )


def line_index(text: str) -> dict[tuple[Any, ...], int]:
    """Each path of the document (keys and indexes) and its 1-based line. Composes the text:
    for error messages only."""
    index: dict[tuple[Any, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=LOADER)
    except (yaml.YAMLError, ValueError):
        return index
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [] if root is None else [(root, ())]
    while stack:
        node, path = stack.pop()
        index.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                index.setdefault((*path, key.value), key.start_mark.line + 1)
                stack.append((value, (*path, key.value)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(node.value))
    return index


def _line(event: yaml.Event) -> int | None:
    mark = event.start_mark  # the parser marks every event; the type allows None
    return None if mark is None else mark.line + 1


def _syntax_problem(text: str, exc: yaml.YAMLError) -> YamlProblem:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        problem = getattr(exc, "problem", None) or str(exc)
        return YamlProblem(f"{problem}, col {mark.column + 1}", mark.line + 1)
    if isinstance(exc, yaml.reader.ReaderError):
        # libyaml counts the position in UTF-8 bytes, PyYAML's reader in characters.
        before = text.encode("utf-8", "surrogatepass")[: exc.position]
        if LOADER is yaml.SafeLoader:
            before = text[: exc.position].encode("utf-8", "surrogatepass")
        return YamlProblem(f"{exc.reason}: character {exc.character!r}", before.count(b"\n") + 1)
    return YamlProblem(str(exc))


def _unconstructable(text: str, exc: Exception) -> YamlProblem:
    """A scalar of a type it is no valid value of (2026-02-30, 0x_): find the first such one
    for its line (composing again: an error path)."""
    constructor = yaml.constructor.SafeConstructor()
    stack = [yaml.compose(text, Loader=LOADER)]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                constructor.construct_object(node)
            except (ValueError, OverflowError) as bad:
                kind = node.tag.rsplit(":", 1)[-1]
                return YamlProblem(
                    f"{node.value!r} is no valid {kind}: {bad}", node.start_mark.line + 1
                )
        elif isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in reversed(node.value) for part in reversed(pair))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
    return YamlProblem(f"{type(exc).__name__}: {exc}")
