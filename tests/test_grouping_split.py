"""Splits: an event that turns out to hold two events of one kind splits in two.

Real reports from the shared ECB+ corpus: topic 35 holds two drink-driving arrests of San
Diego Chargers players (Vincent Jackson, then Jamal Williams a month later). Their reports
score as close to the other arrest as to their own, so the joins mix them; the split
separates them once both sides have reports."""

from __future__ import annotations

import json
import math

import numpy as np

from newswatch.grouping.cluster import Clusterer, Decision, Member, _affinity, bipartition
from newswatch.grouping.settings import GroupingSettings
from tests.conftest import SHARED_DATA, shared_corpus

T0 = 1_763_700_000.0
ECB = SHARED_DATA / "grouping" / "ecbplus-dev.jsonl"


def topic(name: str) -> list[dict[str, str]]:
    shared_corpus(ECB)
    rows = [json.loads(line) for line in ECB.read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if r["event"].startswith(name + "_")]


def feed(c: Clusterer, rows: list[dict[str, str]]) -> list[Decision]:
    return [c.add(n, r["title"], r["text"], T0 + 60 * n) for n, r in enumerate(rows)]


def final_groups(c: Clusterer, rows: list[dict[str, str]]) -> dict[int, set[str]]:
    """Gold labels of each event the articles are in now."""
    groups: dict[int, set[str]] = {}
    for n, r in enumerate(rows):
        groups.setdefault(c.resolve(c.article_event[n]), set()).add(r["event"])
    return groups


def test_bipartition_finds_two_groups_and_no_split_in_one() -> None:
    rng = np.random.default_rng(3)
    two = np.full((8, 8), 0.05)
    two[:4, :4] = two[4:, 4:] = 0.6
    two += rng.uniform(0, 0.02, (8, 8))
    two = (two + two.T) / 2
    np.fill_diagonal(two, 0)
    score, side = bipartition(two, 3)
    assert side is not None and score < 0.3
    assert set(np.flatnonzero(side)) in ({0, 1, 2, 3}, {4, 5, 6, 7})
    one = np.full((8, 8), 0.5) + rng.uniform(0, 0.02, (8, 8))
    one = (one + one.T) / 2
    np.fill_diagonal(one, 0)
    assert bipartition(one, 3)[0] > 0.9  # about 1 for any halving of a uniform graph
    assert bipartition(two[:5, :5], 3) == (float("inf"), None)  # too small for two sides


def as_dict(c: Clusterer, m: Member) -> dict[str, float]:
    """A member's vector with its terms spelt out."""
    terms = [c.vocab.terms[i] for i in m.vector.ids.tolist()]
    return dict(zip(terms, m.vector.weights.tolist(), strict=True))


def test_affinity_is_the_cosine_of_vectors_plus_that_of_their_entities() -> None:
    """The matrix built from shared term hashes equals its plain definition."""
    c = Clusterer()
    rows = topic("ecb-35")[:12]
    feed(c, rows)
    members = [m for e in c.events.values() for m in (e.members or [])]
    assert len(members) == len(rows) == 12

    def dot(a: dict[str, float], b: dict[str, float]) -> float:
        return sum(w * b.get(t, 0.0) for t, w in a.items())

    def unit(v: dict[str, float]) -> dict[str, float]:
        norm = math.sqrt(dot(v, v)) or 1.0
        return {t: w / norm for t, w in v.items()}

    vectors = [as_dict(c, m) for m in members]
    names = [unit({t: w for t, w in v.items() if t[0] in "@#"}) for v in vectors]
    expected = np.array(
        [
            [
                0.0 if i == j else dot(vectors[i], vectors[j]) + dot(names[i], names[j])
                for j in range(len(members))
            ]
            for i in range(len(members))
        ]
    )
    assert np.allclose(_affinity(members, c.vocab.kind), expected)
    assert expected[~np.eye(len(members), dtype=bool)].max() > 0.3  # they do share terms


def test_two_events_of_a_kind_are_mixed_then_split() -> None:
    rows = topic("ecb-35")
    assert len({r["event"] for r in rows}) == 2
    mixed = Clusterer(GroupingSettings(split_ncut=0))
    feed(mixed, rows)
    assert any(len(g) == 2 for g in final_groups(mixed, rows).values())  # without splits

    c = Clusterer(GroupingSettings())
    decisions = feed(c, rows)
    splits = [d.split for d in decisions if d.split is not None]
    assert len(splits) == 1
    split = splits[0]
    assert 0 < split.score < GroupingSettings().split_ncut
    # Each part holds one event's reports; the event that opened first keeps its id.
    groups = final_groups(c, rows)
    assert all(len(g) == 1 for g in groups.values()) and len(groups) == 2
    assert c.resolve(c.article_event[0]) == split.event_id == decisions[0].event_id
    moved_events = {rows[a]["event"] for a in split.moved}
    assert len(moved_events) == 1 and split.new_event_id == min(split.moved)
    assert not decisions[split.new_event_id].opened  # the new id is no other event's
    # The parts never merge again, and later reports go to their own part.
    parts = c.events[split.event_id], c.events[split.new_event_id]
    assert not c._mergeable(*parts, short=False)
    assert sum(e.size for e in parts) == len(rows)


def test_a_restart_keeps_the_parts_apart() -> None:
    rows = topic("ecb-35")
    c = Clusterer(GroupingSettings())
    decisions = feed(c, rows)
    split = next(d.split for d in decisions if d.split is not None)
    restarted = Clusterer(GroupingSettings())
    for n, r in enumerate(rows):
        restarted.restore(
            n,
            c.resolve(c.article_event[n]),
            r["title"],
            r["text"],
            T0 + 60 * n,
            opened=decisions[n].opened,
        )
    restarted.keep_apart(split.event_id, split.new_event_id)
    parts = restarted.events[split.event_id], restarted.events[split.new_event_id]
    assert not restarted._mergeable(*parts, short=False)
    members = [n for n in range(len(rows)) if c.resolve(c.article_event[n]) == parts[1].id]
    assert [m.article_id for m in parts[1].members or []] == members
    assert set(split.moved) < set(members)  # later reports joined the part split off


def test_copies_follow_their_originals() -> None:
    rows = topic("ecb-35")
    c = Clusterer(GroupingSettings())
    stream = []
    for r in rows:
        stream.append(r)
        if len(stream) % 4 == 0:  # a syndicated copy of every fourth report
            stream.append(dict(r, title=r["title"] + " (wire)", text=r["text"] + " More soon."))
    decisions = feed(c, stream)
    copies = [(n, d.duplicate_of) for n, d in enumerate(decisions) if d.duplicate_of is not None]
    assert len(copies) >= 5
    assert any(d.split for d in decisions)
    for n, original in copies:
        assert c.resolve(c.article_event[n]) == c.resolve(c.article_event[original])


def test_headlines_alone_never_split() -> None:
    rows = [dict(r, text="") for r in topic("ecb-35")]
    c = Clusterer(GroupingSettings())
    assert not any(d.split for d in feed(c, rows))


def test_members_are_dropped_past_the_last_check() -> None:
    rows = topic("ecb-1")  # one event of 21 reports and another of 18
    c = Clusterer(GroupingSettings())
    feed(c, rows * 4)  # the same reports again: copies join their originals' events
    big = max(c.events.values(), key=lambda e: e.size)
    assert big.size > 58 and big.members is None


ENGLISH = [
    "Wladimir Klitschko stopped Tony Thompson in the sixth round in Bern on Saturday night and "
    "kept his IBF and WBO heavyweight titles before a crowd at the Stade de Suisse.",
    "Klitschko retained his heavyweight belts with a knockout of Thompson in Bern, the "
    "champion's fourth defence in Switzerland, the referee stopping the bout in the sixth.",
    "A right hand from Wladimir Klitschko floored Tony Thompson and the fight in Bern was "
    "stopped in round six; the IBF and WBO champion said he wants to fight again in autumn.",
    "Thompson, forty, could not survive the sixth round against Klitschko at the Stade de "
    "Suisse in Bern, where the heavyweight champion defended the IBF and WBO titles.",
]
GERMAN = [
    "Wladimir Klitschko hat Tony Thompson in Bern in der sechsten Runde besiegt und seine "
    "Weltmeistertitel der IBF und WBO im Stade de Suisse verteidigt, berichten Zuschauer.",
    "Der Weltmeister Klitschko schlug Thompson im Stade de Suisse in Bern k.o.; der "
    "Ringrichter brach den Kampf in der sechsten Runde ab, die Titel bleiben bei ihm.",
    "In Bern verteidigte Wladimir Klitschko die Guertel von IBF und WBO gegen Tony Thompson, "
    "der nach einer rechten Hand in der sechsten Runde nicht mehr weiterkaempfen konnte.",
    "Tony Thompson verlor in Bern gegen Klitschko, der im Stade de Suisse seine Titel der "
    "IBF und WBO erfolgreich verteidigte und einen weiteren Kampf im Herbst ankuendigte.",
]


def test_one_event_told_in_two_languages_is_not_split() -> None:
    """Reports in two languages share few words but name the same people and places: their
    entities bind them in the similarity graph, and even when a cut is allowed at any score
    the parts' agreeing entities keep the event whole."""
    # Full texts (two sentences each: headlines are never split anyway).
    english = [f"{a} {b}" for a, b in zip(ENGLISH, ENGLISH[1:] + ENGLISH[:1], strict=True)]
    german = [f"{a} {b}" for a, b in zip(GERMAN, GERMAN[1:] + GERMAN[:1], strict=True)]
    reports = [x for pair in zip(english, german, strict=True) for x in pair][:6]
    for settings in (GroupingSettings(), GroupingSettings(split_ncut=2.0)):
        c = Clusterer(settings)
        for n, text in enumerate(reports):
            c.restore(n, 0, text[:60], text, T0 + n, opened=n == 0)
        event = c.events[0]
        members = event.members or []
        assert len(members) == 6
        score, side = bipartition(_affinity(members, c.vocab.kind), 3)
        assert side is not None and score > GroupingSettings().split_ncut
        assert c._check_split(event) is None
        assert c.events[0].size == 6 and set(c.events) == {0}


def test_a_cut_at_any_score_splits_events_that_name_different_people() -> None:
    """The counterpart: with every cut allowed, the Chargers' two arrests split at once."""
    rows = topic("ecb-35")
    c = Clusterer(GroupingSettings(split_ncut=2.0))
    decisions = feed(c, rows)
    assert any(d.split for d in decisions[:9])
