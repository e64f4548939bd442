"""Text features of grouping: name keys, aliases, link-list tails, weighting, figures."""

from __future__ import annotations

import random

from newswatch.grouping.text import (
    NUMBER,
    TAIL_MAX_WORDS,
    WORD,
    extract,
    fold,
    name_key,
    stem,
    strip_tail,
    words_of,
)

WEIGHTS = dict(lead_words=80, body_words=150, title_weight=3.0, body_weight=0.3)


def features(title: str, body: str = "", **kw: float):
    return extract(title, body, **{**WEIGHTS, **kw})


def test_transliterations_share_a_name_key() -> None:
    assert name_key("Kwang") == name_key("Gwan")
    assert name_key("Chol") == name_key("Cholle") == name_key("Chul")
    assert name_key("Müller") == name_key("Muller")
    assert name_key("Kwang") != name_key("Chol")
    assert name_key("Belousov") != name_key("Shoigu")


def test_possessive_is_the_name() -> None:
    assert name_key("Bush's") == name_key("Bush’s") == name_key("Bush")
    assert name_key("Thomas's") == name_key("Thomas") != name_key("Thom")


def test_state_aliases_meet_on_one_key() -> None:
    keys = [
        set(features(t).entities)
        for t in (
            "Talks with North Korea resume",
            "Talks with DPRK resume",
            "Talks with the Democratic People's Republic of Korea resume",
        )
    ]
    assert all("@north korea" in k for k in keys), keys
    # The surface form is kept for display.
    assert features("Talks with DPRK resume").entities["@north korea"] == "DPRK"
    assert "@south korea" in features("Seoul protests").entities
    assert "@north korea" not in features("Seoul protests").entities


def test_link_list_tail_is_cut_and_prose_is_kept() -> None:
    prose = "The minister arrived on Friday.\nHe met the delegation and signed the plan."
    headlines = [f"Factory number {n} overfulfils its plan" for n in range(1, 8)]
    text, cut = strip_tail(prose + "\n" + "\n".join(headlines) + "\n\n")
    assert cut == 7 and text == prose
    # Four short lines are not a list, and ordinary paragraphs are never cut.
    short_tail = prose + "\n" + "\n".join(headlines[:4])
    assert strip_tail(short_tail) == (short_tail, 0)
    assert strip_tail(prose) == (prose, 0)


def test_tail_headlines_do_not_become_terms() -> None:
    body = "Ministers signed a cooperation plan in Pyongyang.\n" + "\n".join(
        f"Tractor plant {w} sends machines to cooperatives" for w in "ABCDEFG"
    )
    feats = features("Defence talks", body)
    assert feats.tail_lines == 7
    assert "tractor" not in feats.terms and "cooperation" in feats.terms


def test_title_outweighs_lead_and_lead_outweighs_later_body() -> None:
    later = " ".join(["filler"] * 90) + " harbour"
    feats = features("Volcano erupts", "The volcano glacier erupted. " + later)
    assert feats.terms["volcano"] == 3.0 + 1.0  # title 3, lead 1
    assert feats.terms["glacier"] == 1.0
    assert feats.terms["harbour"] == 0.3  # after the lead
    assert "filler" in feats.terms and feats.terms["filler"] < 90


def test_figures_are_features_and_stopwords_are_not() -> None:
    feats = features("Quake of 6.1 kills 24", "About 15,000 people fled.", number_weight=2.0)
    assert {"#6.1", "#24", "#15000"} <= set(feats.terms)
    assert "the" not in feats.terms and "of" not in feats.terms


def test_what_counts_as_a_figure() -> None:
    text = "3 x12 12a A4 7.0.1 .5 1,000,000 2,5 _12 (2013) 4.5; é12 99"
    assert NUMBER.findall(text) == ["7.0", "1,000,000", "2,5", "2013", "4.5", "99"]


def test_fold_and_stem() -> None:
    assert fold("Ålesund Café") == "alesund cafe"
    assert stem("talks") == stem("talk") == "talk"
    assert stem("ministries") == "ministry"


def test_empty_and_missing_text_give_empty_features() -> None:
    for title, body in ((None, None), ("", ""), ("   ", "\n\n")):
        feats = extract(title, body, **WEIGHTS)
        assert not feats.terms and not feats.entities and feats.tail_lines == 0


# Letters, digits (decimal and not), joiners, edge punctuation, underscores, combining marks,
# and white space of several kinds, including characters str.split() does not split on.
TRICKY = (
    "a Z é ß Ω ж 中 ' ’ - _ 7 ٣ ² ½ \u0301 . , “ ” « » ( ) / * ! … — – $ % "
    "\t \n \xa0 \u2009 \x1c \u200b"
)


def test_words_of_is_the_word_regex() -> None:
    rng = random.Random(5)
    alphabet = TRICKY.split(" ") + [" "] * 6
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert words_of(text) == WORD.findall(text), repr(text)
        limit = rng.randint(0, 8)
        assert words_of(text, limit) == WORD.findall(text)[:limit], (repr(text), limit)
    prose = "“Don’t,” said O'Neil-Smith (76ers), on 3rd/4th May—twice: U.S. ²nd _x_ Ж1ж."
    assert words_of(prose) == WORD.findall(prose)


def test_a_long_last_line_is_not_a_tail_line() -> None:
    headlines = "\n".join(f"Headline number {n} of the list" for n in "ABCDEF")
    line = " ".join(["Word"] * TAIL_MAX_WORDS)
    assert strip_tail(f"Prose.\n{headlines}\n{line}")[1] == 7
    assert strip_tail(f"Prose.\n{headlines}\n{line} Word")[1] == 0
