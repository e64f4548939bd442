"""Hostile configuration files: alias bombs, deep nesting and recursive aliases get a clear
error naming the line, before anything is built from them; honest aliases keep working."""

from __future__ import annotations

import pytest

from newswatch.config import ConfigError, parse_config_text
from newswatch.safeyaml import MAX_DEPTH


def problem_of(text: str):  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, "hostile.yaml")
    (problem,) = info.value.problems
    assert "hostile.yaml" in str(info.value)
    return problem


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs": each level is `width` aliases of the one before."""
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_the_alias_that_explodes():
    problem = problem_of(alias_bomb())
    assert "alias" in problem.message and "expand" in problem.message
    assert problem.line is not None and 2 <= problem.line <= 10


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 1_000_000])
def test_deep_flow_nesting_is_refused_with_its_line(depth: int):
    # libyaml's own composer recurses in C: a million levels crashed the process (libyaml
    # 0.2.5 refuses 1,000 itself, in its scanner, which reads a little ahead of our check).
    problem = problem_of("sources:\n  - name: a\n    tags: " + "[" * depth + "]" * depth + "\n")
    assert f"deeper than {MAX_DEPTH}" in problem.message or "nesting depth" in problem.message
    assert problem.line == 3


def test_deep_block_nesting_is_refused_with_its_line():
    text = "sources:\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(1, 200))
    problem = problem_of(text)
    assert f"deeper than {MAX_DEPTH}" in problem.message
    assert problem.line == MAX_DEPTH + 1


def test_a_recursive_alias_is_refused():
    problem = problem_of("sources: &loop\n  - *loop\n")
    assert "contains it" in problem.message and problem.line == 2


def test_nesting_up_to_the_limit_reads_and_fails_only_validation():
    inner = "[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3)
    problem = problem_of(f"sources:\n  - name: a\n    url: {inner}\n")
    assert problem.path == "sources[0].url" and problem.line == 3


def test_merge_keys_on_thousands_of_sources_are_an_honest_use_of_aliases():
    first = (
        "  - name: s0\n    url: https://example.org/0\n"
        "    <<: &defaults {kind: feed, interval: 30m, tags: [a, b, c]}\n"
    )
    rest = "".join(
        f"  - <<: *defaults\n    name: s{i}\n    url: https://example.org/{i}\n"
        for i in range(1, 3_000)
    )
    config = parse_config_text("sources:\n" + first + rest)
    assert len(config.sources) == 3_000
    assert {(s.kind, s.interval.total_seconds(), tuple(s.tags)) for s in config.sources} == {
        ("feed", 1800.0, ("a", "b", "c"))
    }


def test_an_invalid_value_of_a_resolved_type_names_its_line():
    # 2026-02-30 resolves to a timestamp that does not exist; 0x_, 0b_ to ints without digits.
    for value in ("2026-02-30", "0x_", "0b_"):
        problem = problem_of(f"sources:\n  - name: a\n    url: {value}\n")
        assert problem.line == 3 and value in problem.message
