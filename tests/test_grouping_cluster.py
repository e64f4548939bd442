"""The in-memory clusterer: decisions, near-duplicates, restore, entities, expiry."""

from __future__ import annotations

import numpy as np
import pytest

from newswatch.grouping import cluster
from newswatch.grouping.cluster import Clusterer
from newswatch.grouping.settings import GroupingSettings

T0 = 1_763_700_000.0
HOUR = 3600.0

QUAKE = (
    "Strong earthquake of magnitude 6.8 hits Kermadec islands",
    "A strong earthquake of magnitude 6.8 struck near the Kermadec islands on Monday, the "
    "geological survey said. Seismologists in Wellington said the quake was shallow and "
    "that a tsunami warning for Tonga and Samoa had been lifted after two hours. Residents "
    "of Raoul island reported strong shaking but no damage to the weather station there, "
    "and officials said nobody was hurt.",
)
QUAKE_2 = (
    "Magnitude 6.8 quake near Kermadec islands, tsunami warning lifted",
    "Seismologists in Wellington said a shallow earthquake of magnitude 6.8 shook the "
    "Kermadec islands on Monday. A tsunami warning for Tonga and Samoa was lifted two hours "
    "later. Staff at the Raoul island weather station felt strong shaking, officials said, "
    "but nobody was hurt and nothing was damaged.",
)
ELECTION = (
    "Ruling party wins Tasmanian state election",
    "The ruling party won a second term in the Tasmanian state election on Saturday, taking "
    "eighteen of the thirty-five seats in parliament. The premier thanked voters in Hobart "
    "and promised to build a new stadium and cut hospital waiting lists. The opposition "
    "leader conceded defeat late in the evening and said her party would rebuild.",
)


def clusterer(**kw: float) -> Clusterer:
    return Clusterer(GroupingSettings(**kw))


def test_similar_reports_join_and_unrelated_ones_open_events() -> None:
    c = clusterer()
    first = c.add(10, *QUAKE, T0)
    assert (first.event_id, first.opened, first.stage) == (10, True, "new")
    second = c.add(11, *QUAKE_2, T0 + 600)
    assert (second.event_id, second.opened, second.stage) == (10, False, "similar")
    assert second.score >= GroupingSettings().threshold
    assert "Kermadec" in second.shared_entities
    third = c.add(12, *ELECTION, T0 + 900)
    assert (third.event_id, third.opened) == (12, True)


def test_a_copy_is_a_duplicate_of_the_article_it_copies() -> None:
    c = clusterer()
    c.add(1, *QUAKE, T0)
    c.add(2, *ELECTION, T0 + 60)
    copy = c.add(3, QUAKE[0] + " - update", QUAKE[1] + " More to follow.", T0 + 120)
    assert copy.stage == "duplicate" and copy.duplicate_of == 1 and copy.event_id == 1
    assert copy.score >= GroupingSettings().duplicate_jaccard


def test_signature_survives_bytes_and_a_restart() -> None:
    c = clusterer()
    decision = c.add(1, *QUAKE, T0)
    assert decision.signature is not None
    stored = decision.signature.astype("<u4").tobytes()
    restarted = clusterer()
    restarted.restore(1, 1, *QUAKE, T0, signature=np.frombuffer(stored, dtype="<u4"))
    copy = restarted.add(5, *QUAKE, T0 + 60)
    assert copy.stage == "duplicate" and copy.duplicate_of == 1


def test_restore_without_a_stored_signature_hashes_the_text() -> None:
    # What the store's loader does: copies of articles seen before a restart are still copies.
    restarted = clusterer()
    restarted.restore(1, 1, *QUAKE, T0)
    copy = restarted.add(5, *QUAKE, T0 + 60)
    assert copy.stage == "duplicate" and copy.duplicate_of == 1 and copy.event_id == 1


def test_restore_continues_the_stored_events_without_deciding() -> None:
    c = clusterer()
    # Stored as one event although unrelated: restore obeys the store.
    c.restore(1, 1, *QUAKE, T0)
    c.restore(2, 1, *ELECTION, T0 + 60)
    c.restore(3, 3, "Dockers strike at Rotterdam port", "Dockers walked out in Rotterdam.", T0)
    assert set(c.events) == {1, 3} and c.events[1].size == 2
    joined = c.add(4, *QUAKE_2, T0 + 120)
    assert (joined.event_id, joined.opened) == (1, False)


def test_top_entities_are_surface_forms_heaviest_first() -> None:
    c = clusterer()
    c.add(1, *QUAKE, T0)
    c.add(2, *QUAKE_2, T0 + 60)
    top = c.top_entities(1, n=3)
    assert len(top) == 3 and "Kermadec" in top
    assert all(name[0].isupper() for name in top)
    assert c.top_entities(999) == []


def test_beyond_the_window_a_similar_report_opens_a_new_event() -> None:
    c = clusterer(window_hours=24)
    c.add(1, *QUAKE, T0)
    later = c.add(2, *QUAKE_2, T0 + 30 * HOUR)
    assert (later.event_id, later.opened) == (2, True)


def test_memory_is_bounded_by_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "DF_MAX", 500)  # so that a short test reaches the cap
    monkeypatch.setattr(cluster, "POSTINGS_SWEEP_EVERY", 2)  # and a sweep of postings
    c = clusterer(window_hours=1)
    for n in range(2500):  # one distinct report a minute for 40 hours
        body = f"Crane {n} moved containers at berth {n % 97} of the harbour. " * 4
        c.add(n, f"Report {n} on harbour {n % 97} works", body, T0 + 60 * n)
    assert len(c.events) <= 60 + 1000  # the window plus one sweep interval
    assert len(c.lsh) <= 60 + 1000
    assert len(c.article_event) <= 60 + 1000
    # Every article brought figures of its own: their postings were forgotten with it.
    assert len(c.postings) < 60 * 40
    # Words seen once were forgotten at the sweeps once the vocabulary passed its cap.
    assert len(c.vocab) < 500 + 2 * 1000
    assert c.vocab.df_of("harbour") == 2500


def test_a_long_running_event_stays_bounded() -> None:
    # A story that keeps its event alive for days: every report brings new names and words,
    # but the event keeps only its heaviest terms and their names.
    c = clusterer()
    for n in range(400):
        extra = " ".join(f"Witness{n}x{k} word{n}y{k}" for k in range(4))
        c.add(n, QUAKE[0], f"{QUAKE[1]} {extra}", T0 + 60 * n)
    event = max(c.events.values(), key=lambda e: e.size)
    assert event.size >= 390
    assert len(event.centroid) <= 2 * cluster.CENTROID_TERMS
    assert len(c.entity_names[event.id]) <= 2 * cluster.CENTROID_TERMS
    assert "Kermadec" in c.top_entities(event.id)


def test_a_report_bridging_two_events_merges_them() -> None:
    c = clusterer()
    others = [
        "Parliament passes budget bill",
        "Storm cuts power to thousands",
        "Bank raises interest rates",
        "Film festival opens in Venice",
    ]
    for n, headline in enumerate(others * 3, start=100):  # some IDF to go by
        c.add(n, f"{headline} {n}", "", T0)
    a = c.add(1, "Rotterdam dockers strike", "", T0 + 60)
    b = c.add(2, "Port workers walk out over pay in Antwerp", "", T0 + 120)
    assert a.opened and b.opened
    bridge = c.add(3, "Dockers strike at Rotterdam and Antwerp ports over pay", "", T0 + 180)
    assert bridge.merged == [2] and bridge.event_id == 1
    assert c.resolve(2) == 1 and c.events[2].merged_into == 1
    assert c.events[1].size == 3
    # Later reports of either side land in the surviving event.
    assert c.add(4, "Antwerp port workers walk out", "", T0 + 240).event_id == 1


def test_same_input_same_events() -> None:
    runs = []
    for _ in range(2):
        c = clusterer()
        runs.append(
            [
                c.add(n, *text, T0 + n).event_id
                for n, text in enumerate([QUAKE, ELECTION, QUAKE_2, ELECTION])
            ]
        )
    assert runs[0] == runs[1] == [0, 1, 0, 1]


# --- the window: nothing joins an event whose span is more than window_hours away -----------
YEARS_AGO = T0 - 20 * 365 * 24 * HOUR  # an archive article republished in a feed


def test_an_article_far_in_the_past_opens_its_own_event() -> None:
    c = clusterer()
    c.add(1, *QUAKE, T0)
    old = c.add(2, *QUAKE_2, YEARS_AGO)
    assert (old.event_id, old.opened) == (2, True)
    assert c.events[1].first_seen == T0  # today's event keeps its span


def test_the_window_holds_before_an_events_span_as_after_it() -> None:
    c = clusterer(window_hours=24)
    c.add(1, *QUAKE, T0)
    earlier = c.add(2, *QUAKE_2, T0 - 30 * HOUR)
    assert (earlier.event_id, earlier.opened) == (2, True)
    # Within the window on either side, a report joins.
    c2 = clusterer(window_hours=24)
    c2.add(1, *QUAKE, T0)
    assert c2.add(2, *QUAKE_2, T0 - 20 * HOUR).event_id == 1
    assert c2.add(3, *ELECTION, T0).opened
    assert c2.add(4, *QUAKE_2, T0 + 20 * HOUR).event_id == 1  # 40 h after its first report


def test_a_copy_joins_no_event_outside_the_window() -> None:
    c = clusterer()
    c.add(1, *QUAKE, YEARS_AGO)  # the archive original
    # A copy of it today (or one without a publication time, counted at its first-seen
    # time): MinHash finds the original, but its event is decades away.
    today = c.add(2, QUAKE[0] + " - update", QUAKE[1] + " More to follow.", T0)
    assert (today.event_id, today.opened, today.duplicate_of) == (2, True, None)
    # A later exact copy of the original is nearest to it, but joins today's copy instead.
    again = c.add(3, *QUAKE, T0 + HOUR)
    assert (again.event_id, again.stage, again.duplicate_of) == (2, "duplicate", 2)
    # A copy of today's report dated far back starts its own event too.
    back = c.add(4, *QUAKE, YEARS_AGO - 30 * 24 * HOUR)
    assert (back.event_id, back.opened) == (4, True)
    assert c.events[1].size == 1 and c.events[2].size == 2


def test_an_empty_batch_decides_nothing_and_changes_nothing() -> None:
    c = clusterer()
    c.add(1, *QUAKE, T0)
    terms = len(c.vocab)
    assert c.add_many([]) == []
    assert (c.docs, c.added, len(c.vocab), len(c.lsh)) == (1, 1, terms, 1)
    copy = c.add(2, *QUAKE, T0 + 60)
    assert copy.stage == "duplicate" and copy.duplicate_of == 1
