"""The rule language, the all-rules matcher, and rule configuration errors."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from newswatch.alerts.matcher import CompiledRule, RuleSet, triggers
from newswatch.alerts.query import (
    And,
    Document,
    Not,
    Or,
    Phrase,
    QueryError,
    Term,
    evaluate,
    matched_terms,
    parse,
    words,
)
from newswatch.config import ConfigError, load_config

DOC = Document.of(
    title="Belousov meets the North Korean defence minister in Pyongyang",
    text="Russia's defence minister Andrei Belousov discussed sanctions with DPRK officials "
    "in Kyïv-style talks. Café owners watched.",
    source="agency-a",
    lang="en",
)


def matches(query: str, doc: Document = DOC) -> bool:
    return evaluate(parse(query), doc)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("belousov", True),
        ("BELOUSOV", True),  # case-insensitive
        ("kyiv", True),  # accent-insensitive: "Kyïv" in the text
        ("cafe", True),
        ("Café", True),
        ("sanction*", True),  # trailing wildcard
        ("sanctionz*", False),
        ("sanction", False),  # whole words only
        ('"defence minister"', True),
        ('"minister defence"', False),  # a phrase is consecutive words in order
        ('"North Korean defence"', True),
        ("belousov AND dprk", True),
        ("belousov dprk", True),  # adjacency is AND
        ("belousov AND football", False),
        ("football OR dprk", True),
        ("belousov NOT dprk", False),
        ("belousov -football", True),
        ("NOT football", True),
        ("football OR belousov AND dprk", True),  # AND binds tighter than OR
        ("(football OR belousov) AND nothing", False),
        ('(Belousov OR "defence minister") AND (DPRK OR "North Korea") NOT sport*', True),
        ("title:pyongyang", True),
        ("text:pyongyang", False),
        ("title:sanctions", False),
        ("text:sanction*", True),
        ("source:agency-a", True),  # "agency-a" is the words "agency a" in sequence
        ("source:agency-b", False),
        ("source:belousov", False),
        ("lang:en", True),
        ("lang:de", False),
        ("LANG:EN", True),
        ("russia", True),  # "Russia's" is the words "russia" and "s"
        ("u.s.", False),
    ],
)
def test_query_semantics(query: str, expected: bool) -> None:
    assert matches(query) is expected


def test_parse_tree_shape() -> None:
    tree = parse('a OR b c NOT title:"d e" f*')
    assert tree == Or(
        (
            Term(("title", "text"), "a"),
            And(
                (
                    Term(("title", "text"), "b"),
                    Term(("title", "text"), "c"),
                    Not(Phrase(("title",), ("d", "e"))),
                    Term(("title", "text"), "f", prefix=True),
                )
            ),
        )
    )


@pytest.mark.parametrize(
    ("query", "column", "message"),
    [
        ("", 1, "empty query"),
        ("   ", 1, "empty query"),
        ('(Belousov OR "defence minister"', 1, 'unmatched "("'),
        ('dprk AND (Belousov OR "defence minister"', 10, 'unmatched "("'),
        ("belousov)", 9, 'unmatched ")"'),
        ('belousov "north korea', 10, 'unmatched """'),
        ("belousov AND", 13, "expected a term at the end"),
        ("OR belousov", 1, "OR needs a term before it"),
        ("a AND OR b", 7, "OR needs a term before it"),
        ("()", 2, "empty parentheses"),
        ("foo:bar", 1, "unknown field 'foo'"),
        ("a AND b*c", 7, "a wildcard may only end a term"),
        ("x al-as*", 3, "a wildcard may only end a single word"),
        ('""', 1, "empty phrase"),
        ("!!!", 1, "has no letters or digits"),
    ],
)
def test_query_errors_name_the_column(query: str, column: int, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(query)
    assert info.value.column == column, str(info.value)
    assert message in info.value.message
    assert str(info.value).startswith(f"col {column}: ")


def test_matched_terms_explain_a_match() -> None:
    tree = parse('(Belousov OR "defence minister" OR shoigu) AND sanction* NOT football')
    assert matched_terms(tree, DOC) == ["belousov", '"defence minister"', "sanction*"]


def test_triggers_are_the_words_a_match_needs() -> None:
    assert triggers(parse("a AND (b OR c*)")) == {("w", "a")}
    assert triggers(parse("(a OR b) NOT c")) == {("w", "a"), ("w", "b")}
    assert triggers(parse('"north korea"')) == {("w", "north")}
    assert triggers(parse("NOT a")) is None
    assert triggers(parse("a OR NOT b")) is None


# --- the all-rules matcher agrees with evaluating each rule ----------------------------
VOCAB = [
    "belousov", "korea", "north", "dprk", "sanction", "sanctions", "minister", "defence",
    "kyiv", "quake", "storm", "flood", "election", "vote", "summit", "oil", "gas", "bank",
    "rate", "strike", "port", "army", "navy", "café", "zürich", "agency",
]  # fmt: skip


def _random_query(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth >= 2 or roll < 0.45:
        word = rng.choice(VOCAB)
        form = rng.random()
        if form < 0.2:
            return word[: rng.randint(2, len(word))] + "*"
        if form < 0.35:
            return f'"{word} {rng.choice(VOCAB)}"'
        if form < 0.45:
            return f"{rng.choice(['title', 'text', 'source'])}:{word}"
        return word
    if roll < 0.55:
        return "NOT " + _random_query(rng, depth + 1)
    op = rng.choice([" AND ", " OR ", " "])
    parts = [_random_query(rng, depth + 1) for _ in range(rng.randint(2, 3))]
    return "(" + op.join(parts) + ")"


def test_ruleset_matches_exactly_what_each_rule_matches() -> None:
    rng = random.Random(7)
    rules = [CompiledRule(f"r{i}", parse(_random_query(rng))) for i in range(600)]
    ruleset = RuleSet(rules)
    assert ruleset.always, "some random rules are pure negations"
    for _ in range(300):
        doc = Document.of(
            title=" ".join(rng.choices(VOCAB, k=rng.randint(0, 6))),
            text=" ".join(rng.choices(VOCAB, k=rng.randint(0, 25))),
            source=rng.choice(["agency a", "zürich post"]),
        )
        expected = [r.name for r in rules if evaluate(r.query, doc)]
        assert [r.name for r in ruleset.match(doc)] == expected


def test_ruleset_prefilter_skips_unrelated_rules() -> None:
    rules = [CompiledRule(f"r{i}", parse(f"word{i} AND other")) for i in range(100)]
    rules.append(CompiledRule("wild", parse("sanction*")))
    ruleset = RuleSet(rules)
    doc = Document.of(title="word7 other sanctions", text="")
    assert ruleset.candidates(doc) == {7, 100}
    assert [r.name for r in ruleset.match(doc)] == ["r7", "wild"]
    assert RuleSet([]).match(doc) == []


# --- rule configuration -----------------------------------------------------------------
def _config(tmp_path: Path, rules: str) -> Path:
    path = tmp_path / "newswatch.yaml"
    path.write_text(
        "channels:\n"
        "  - name: ops\n"
        "    type: webhook\n"
        "    url: http://127.0.0.1:9/hook\n"
        "rules:\n" + rules
    )
    return path


def test_config_rejects_a_bad_query_with_rule_index_and_column(tmp_path: Path) -> None:
    rules = "".join(
        f"  - name: r{i}\n    query: 'ok{i}'\n    channels: [ops]\n" for i in range(3)
    ) + ("  - name: broken\n    query: 'dprk AND (belousov OR x'\n    channels: [ops]\n")
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, rules))
    assert 'rules[3].query: col 10: unmatched "("' in str(info.value)
    assert "(line 16)" in str(info.value)


def test_config_rejects_unknown_channel_and_bad_settings(tmp_path: Path) -> None:
    rules = (
        "  - name: a\n    query: x\n    channels: [ops, pager]\n"
        "  - name: b\n    query: x\n    channels: [ops]\n    quiet_hours: '25:00-07:00'\n"
        "  - name: c\n    query: x\n    channels: [ops]\n    window: soon\n"
        "  - name: d\n    query: x\n    channels: [ops]\n    timezone: Mars/Olympus\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, rules))
    message = str(info.value)
    assert "rules[1].quiet_hours" in message and "not a time of day" in message
    assert "rules[2].window" in message
    assert "rules[3].timezone" in message and "unknown time zone 'Mars/Olympus'" in message


def test_config_rejects_unknown_channel(tmp_path: Path) -> None:
    rules = "  - name: a\n    query: x\n    channels: [ops, pager]\n"
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, rules))
    assert "rules[0].channels: no channel named 'pager' (channels: ops)" in str(info.value)


def test_config_loads_rules(tmp_path: Path) -> None:
    rules = (
        "  - name: dprk-defence\n"
        '    query: \'(Belousov OR "defence minister") AND (DPRK OR "North Korea")\'\n'
        "    min_sources: 2\n    window: 24h\n    channels: [ops]\n"
        "    updates: true\n    quiet_hours: '22:00-07:00'\n    repeat_interval: 1h\n"
    )
    config = load_config(_config(tmp_path, rules))
    (rule,) = config.rules
    assert rule.min_sources == 2 and rule.window is not None
    assert rule.window.total_seconds() == 86400 and rule.repeat_interval is not None
    assert evaluate(rule.compiled(), DOC)


def test_words_fold_only_what_needs_it() -> None:
    text = "Kyïv Café ZÜRICH x² İstanbul ﬁne ½ Naïve-test Москва́ ÆON straße e\u0301te"
    assert words(text) == [
        "kyiv", "cafe", "zurich", "x2", "istanbul", "fine", "1", "2", "naive", "test",
        "москва", "æon", "straße", "ete",
    ]  # fmt: skip
    assert words("Plain ASCII, words.") == ["plain", "ascii", "words"]
    # A mark NFC cannot compose does not split its word; symbols are not words.
    assert words("Москва\u0301ский Opteron™") == ["москваскии", "opteron"]


# One case per rule of `words`, most of them feed titles from ../shared/data/feeds: each
# expected list follows from the rules (fold case and accents, split at non-word characters).
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Cyrillic: lowercased; "й" loses its breve like any accent; "из-под" is two words.
        (
            "Переполох был вызван обнаружением бесхозной коробки из-под обуви",
            [
                "переполох",
                "был",
                "вызван",
                "обнаружением",
                "бесхознои",
                "коробки",
                "из",
                "под",
                "обуви",
            ],
        ),
        (
            "Невидимая броня для Вашего Nokia 5800",
            ["невидимая", "броня", "для", "вашего", "nokia", "5800"],
        ),
        # Greek: a capital sigma ending a word lowers to the final form.
        ("testing Φ entity ΟΔΟΣ", ["testing", "φ", "entity", "οδος"]),
        # Japanese has no spaces: a run of letters and digits is one word.
        ("記事1のタイトル", ["記事1のタイトル"]),
        # Emoji and other symbols are not words.
        ("a few noob questions 😅", ["a", "few", "noob", "questions"]),
        ("testing ♥ entity", ["testing", "entity"]),
        # A typographic apostrophe splits like the ASCII one.
        (
            "Lamb’s Quarter: My Favorite Wild Green.",
            ["lamb", "s", "quarter", "my", "favorite", "wild", "green"],
        ),
        ("Russia's McDONALD's", ["russia", "s", "mcdonald", "s"]),
        # Separators split figures; superscripts and fractions fold to digits.
        (
            "15,000 people, 6.1 quake, x² ½",
            ["15", "000", "people", "6", "1", "quake", "x2", "1", "2"],
        ),
        ("15 000\u00a0km", ["15", "000", "km"]),
        # Accents go, other letters stay; "_" is a word character.
        ("ZÜRICH Åland ÆON snake_case", ["zurich", "aland", "æon", "snake_case"]),
    ],
)
def test_words_rules_on_real_text(text: str, expected: list[str]) -> None:
    assert words(text) == expected


def test_words_same_for_ascii_and_typographic_text() -> None:
    # ASCII text takes a shorter path; typographic punctuation must not change the words.
    plain = 'Don\'t panic - 15,000 "people" left (Kyiv)...'
    fancy = "Don’t panic — 15,000 “people” left (Kyiv)…"
    assert plain.isascii() and not fancy.isascii()
    assert (
        words(plain) == words(fancy) == ["don", "t", "panic", "15", "000", "people", "left", "kyiv"]
    )
    # A non-ASCII letter beside them is still folded; a lone surrogate parts words.
    assert words("Kyïv’s “ZÜRICH”") == ["kyiv", "s", "zurich"]
    assert words("a\ud800b’c") == ["a", "b", "c"]


def test_word_patterns_match_exactly_the_word_characters() -> None:
    # The faster word patterns must accept exactly what \w accepts, on every code point.
    from newswatch.alerts.query import _ASCII_WORD, _WORD

    word = re.compile(r"\w")
    every = [chr(i) for i in range(0x110000) if not 0xD800 <= i < 0xE000]
    assert [c for c in every if _WORD.fullmatch(c)] == [c for c in every if word.fullmatch(c)]
    ascii_chars = [chr(i) for i in range(128)]
    assert [c for c in ascii_chars if _ASCII_WORD.fullmatch(c)] == [
        c for c in ascii_chars if word.fullmatch(c)
    ]
