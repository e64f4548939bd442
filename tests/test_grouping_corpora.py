"""Grouping quality on the real labelled corpora, and the motivating three-outlet example.

Deterministic: the same input gives the same events. The floors are the figures measured
with the default settings (docs/benchmarks.md), less a small margin; the issue's targets are
ECB+ >= 0.90 (not reached yet) and UCI >= 0.80.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from newswatch.grouping.cluster import Clusterer
from newswatch.grouping.settings import GroupingSettings
from newswatch.replay import bcubed
from tests.conftest import SHARED_DATA

GROUPING = SHARED_DATA / "grouping"


def replay_in_memory(name: str) -> tuple[float, float, float]:
    rows = [json.loads(line) for line in (GROUPING / name).read_text().splitlines()]
    clusterer = Clusterer(GroupingSettings())
    gold, predicted = {}, {}
    for i, row in enumerate(rows):
        published = row.get("published")
        when = (
            datetime.fromisoformat(published.replace("Z", "+00:00")).timestamp() if published else 0
        )
        decision = clusterer.add(i, row["title"], row["text"], when)
        gold[row["id"]] = row["event"]
        predicted[row["id"]] = decision.event_id
    return bcubed(gold, {k: clusterer.resolve(v) for k, v in predicted.items()})


@pytest.mark.parametrize(
    "corpus, floor",
    [("ecbplus-dev.jsonl", 0.86), ("uci-headlines-dev.jsonl", 0.80)],
)
def test_bcubed_f1_on_dev_corpora(corpus: str, floor: float) -> None:
    if not (GROUPING / corpus).exists():
        pytest.fail(f"shared corpus missing: {GROUPING / corpus}")
    precision, recall, f1 = replay_in_memory(corpus)
    assert f1 >= floor, (precision, recall, f1)
    # Far above near-duplicate hashing alone (0.174 and 0.041 on these files).
    assert precision > 0.75 and recall > 0.7


RUSSIAN = (
    "Belousov and Gwan Cholle discussed military cooperation",
    "Russian Defence Minister Andrei Belousov held talks in Pyongyang with the Minister of "
    "National Defence of the DPRK Gwan Cholle. The ministers discussed the development of "
    "military cooperation between Russia and the Democratic People's Republic of Korea and "
    "signed a plan of joint exercises for the coming year, the Russian defence ministry said.",
)
WIRE = (
    "Russia's Belousov meets North Korean defence chief No Kwang Chol in Pyongyang",
    "Russian Defence Minister Andrei Belousov met North Korea's defence minister No Kwang Chol "
    "in Pyongyang on Friday. The two sides agreed to expand military cooperation and signed a "
    "plan for joint exercises next year, Moscow's defence ministry said in a statement.",
)
HEADLINES = [
    "Respected Leader inspects new fertiliser factory in South Hamgyong",
    "Rice transplanting gathers pace across the country",
    "Schoolchildren's palace hosts national art contest",
    "New housing district completed in Pyongyang outskirts",
    "Scientists report progress in seed breeding",
    "Youth league meeting held in Kaesong",
    "Fishing season opens on east coast",
    "Textile mill overfulfils quarterly plan",
    "Exhibition of industrial designs opens",
    "Tree planting month draws thousands",
    "Railway workers renovate mountain line",
    "Football league resumes after winter break",
    "Mother's Day celebrated in provinces",
    "Hospital opens new paediatric ward",
    "University holds science and technology festival",
    "Power station upgrades turbines",
    "Farm machinery plant sends tractors to cooperatives",
    "Children's film wins national prize",
    "Orchestra gives concert for workers",
    "Weather service warns of spring drought",
]
KOREAN = (
    "DPRK Minister of National Defence receives Russian military delegation",
    "No Kwang Chol, Minister of National Defence of the Democratic People's Republic of Korea, "
    "received the military delegation of the Russian Federation headed by Defence Minister "
    "Andrei Belousov. The sides discussed cooperation between the armed forces of the DPRK and "
    "Russia and signed a plan of joint exercises.\n" + "\n".join(HEADLINES),
)


def test_three_outlets_one_meeting_and_the_headline_list_stays_out() -> None:
    clusterer = Clusterer(GroupingSettings())
    decisions = {}
    t = 1_763_800_000.0
    for n, (title, body) in enumerate([RUSSIAN, WIRE, KOREAN]):
        decisions[n] = clusterer.add(n, title, body, t + 600 * n)
    for n, headline in enumerate(HEADLINES, start=100):
        decisions[n] = clusterer.add(n, headline, "", t + 3600 + n)
    meeting = {clusterer.resolve(decisions[n].event_id) for n in (0, 1, 2)}
    assert len(meeting) == 1, [decisions[n] for n in (0, 1, 2)]
    (event_id,) = meeting
    others = {clusterer.resolve(decisions[n].event_id) for n in range(100, 100 + len(HEADLINES))}
    assert event_id not in others
    # The Korean page's link list was recognised as such.
    features = clusterer.features(*KOREAN)
    assert features.tail_lines == len(HEADLINES)
    # Aliases and transliterations met: the joins were on shared entities.
    assert decisions[1].shared_entities and decisions[2].shared_entities
