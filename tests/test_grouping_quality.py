"""Grouping quality: B-cubed on the labelled dev corpora replayed in memory, and the three
outlets' reports of one defence ministers' meeting (tests/fixtures/grouping).

Deterministic (no timing, same input same events). The corpus floors are the figures
measured with the default settings less 0.01 (docs/benchmarks.md), raised only; issue 18's
targets are ECB+ >= 0.92 (reached: 0.927) and UCI >= 0.84 (reached: 0.841), with the
halves of each corpus within 0.03 of each other.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from newswatch.grouping.cluster import Clusterer, Decision
from newswatch.grouping.settings import GroupingSettings
from newswatch.replay import bcubed
from tests.bench_scripts import bench_script
from tests.conftest import SHARED_DATA, shared_corpus

GROUPING = SHARED_DATA / "grouping"
FIXTURE = Path(__file__).parent / "fixtures" / "grouping" / "defence_meeting.json"
T0 = 1_763_700_000.0


def replay(name: str) -> tuple[float, float, float]:
    path = GROUPING / name
    shared_corpus(path)
    clusterer = Clusterer(GroupingSettings())
    gold, article = {}, {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        row = json.loads(line)
        published = row.get("published")
        when = datetime.fromisoformat(published.replace("Z", "+00:00")) if published else None
        clusterer.add(i, row["title"], row["text"], when.timestamp() if when else 0)
        gold[row["id"]] = row["event"]
        article[row["id"]] = i
    # Where each article is at the end (merges and splits since it was assigned).
    final = {k: clusterer.resolve(clusterer.article_event[i]) for k, i in article.items()}
    return bcubed(gold, final)


@pytest.mark.parametrize(
    "corpus, f1_floor, precision_floor, recall_floor",
    [
        # Recall floor lowered 0.93 -> 0.919 (measured less 0.01) when "2,000" stopped
        # reading as a year (decision 0189, amended): one more, precise split on topic 11.
        ("ecbplus-dev.jsonl", 0.920, 0.915, 0.919),  # measured 0.925 / 0.929 / 0.927
        ("uci-headlines-dev.jsonl", 0.831, 0.930, 0.751),  # measured 0.940 / 0.761 / 0.841
    ],
)
def test_bcubed_on_dev_corpora(
    corpus: str, f1_floor: float, precision_floor: float, recall_floor: float
) -> None:
    precision, recall, f1 = replay(corpus)
    assert f1 >= f1_floor, (precision, recall, f1)
    assert precision >= precision_floor and recall >= recall_floor, (precision, recall)


def _halves():
    """bench/grouping_halves.py as a module (the split and replay the figures come from)."""
    return bench_script("grouping_halves")


@pytest.mark.parametrize(
    "corpus, tuning_floor, checking_floor",
    [
        ("ecbplus-dev.jsonl", 0.904, 0.918),  # measured 0.914 / 0.928
        ("uci-headlines-dev.jsonl", 0.816, 0.791),  # measured 0.826 / 0.802
    ],
)
def test_halves_score_alike(corpus: str, tuning_floor: float, checking_floor: float) -> None:
    """Each half replayed alone (decision 0174): both at their floors, and the checking
    half within 0.03 of the tuning half (a wider gap is over-fitting)."""
    shared_corpus(GROUPING / corpus)
    halves = _halves()
    rows = halves.load(corpus)
    f1 = {
        half: halves.replay([r for r in rows if halves.half_of(corpus, r["event"]) == half])[2]
        for half in halves.HALVES
    }
    assert f1["tuning"] >= tuning_floor and f1["checking"] >= checking_floor, f1
    assert abs(f1["tuning"] - f1["checking"]) <= 0.03, f1


def test_three_outlets_report_one_meeting() -> None:
    """A machine-translated Russian report ("Gwan Cholle"), an English wire ("No Kwang Chol",
    "North Korea") and a North Korean outlet ("DPRK", full state name, twenty headlines of
    other stories under the text) form one event; unrelated reports and the headlines, posted
    as articles of their own, stay out of it."""
    fixture = json.loads(FIXTURE.read_text(encoding="utf-8"))
    meeting, unrelated = fixture["meeting"], fixture["unrelated"]
    clusterer = Clusterer(GroupingSettings())
    # Interleaved as a stream would deliver them, ten minutes apart.
    stream = [unrelated[0], meeting[0], unrelated[1], meeting[1], unrelated[2], meeting[2]]
    decisions: list[Decision] = [
        clusterer.add(n, item["title"], item["text"], T0 + 600 * n) for n, item in enumerate(stream)
    ]
    meeting_events = {clusterer.resolve(decisions[n].event_id) for n in (1, 3, 5)}
    assert meeting_events == {1}, decisions
    assert [d.opened for d in decisions] == [True, True, True, False, True, False]
    for n in (0, 2, 4):
        assert clusterer.resolve(decisions[n].event_id) == n
    # The joins were made on names that only meet after normalisation.
    assert {"Kwang", "Chol"} <= set(decisions[3].shared_entities)  # "Gwan Cholle" in event 1
    assert "DPRK" in decisions[5].shared_entities  # "North Korean" / "Democratic People's..."
    # The North Korean page's list of headlines was cut off before grouping.
    korean = meeting[2]
    assert clusterer.features(korean["title"], korean["text"]).tail_lines == 20
    for n, headline in enumerate(fixture["headlines"], start=100):
        decision = clusterer.add(n, headline, "", T0 + 3600 + n)
        assert clusterer.resolve(decision.event_id) != 1, (headline, decision)
    top = clusterer.top_entities(1, n=8)
    assert "Belousov" in top
