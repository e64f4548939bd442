"""Specific evidence in grouping (grouping/evidence.py, decision 0175): names rare in the
window, the veto on different headline subjects, the alias table as data, and the
explanations `events show --explain` and `events near` read (SQLite and Postgres).

The headlines of tests/fixtures/grouping/bankruptcies.jsonl were written for these tests:
two bankruptcies of the same week (an exchange, a pizza chain) told in the same words."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from newswatch.grouping import evidence, text
from newswatch.grouping.cluster import Clusterer, _affinity, bipartition
from newswatch.grouping.settings import GroupingSettings
from newswatch.replay import bcubed
from tests.bench_scripts import bench_script
from tests.cli_support import newswatch

BANKRUPTCIES = Path(__file__).parent / "fixtures" / "grouping" / "bankruptcies.jsonl"
T0 = 1_773_100_000.0


def _rows() -> list[dict[str, str]]:
    return [json.loads(line) for line in BANKRUPTCIES.read_text(encoding="utf-8").splitlines()]


def _replay(settings: GroupingSettings) -> tuple[Clusterer, list[int], list[str]]:
    """The fixture's headlines in order, a minute apart: the clusterer, each headline's
    final event and its gold label."""
    rows = _rows()
    clusterer = Clusterer(settings)
    for n, row in enumerate(rows):
        clusterer.add(n, row["title"], row["text"], T0 + 60 * n)
    final = [clusterer.resolve(clusterer.article_event[n]) for n in range(len(rows))]
    return clusterer, final, [row["event"] for row in rows]


def test_different_subjects_keep_two_bankruptcies_apart() -> None:
    """Without the veto the pizza chain's reports join the exchange's event (they share
    "files for bankruptcy protection"); with it they form their own, and the exchange's
    reports stay together."""
    _, mixed, labels = _replay(GroupingSettings(subject_veto=False))
    assert len(set(mixed)) == 1  # the failure the veto is for
    _, final, labels = _replay(GroupingSettings())
    groups = {
        label: {e for e, lab in zip(final, labels, strict=True) if lab == label} for label in labels
    }
    assert len(groups["gox"]) == 1 and len(groups["sbarro"]) == 1
    assert groups["gox"] != groups["sbarro"]


def test_the_veto_and_the_evidence_are_recorded() -> None:
    rows = _rows()
    clusterer = Clusterer(GroupingSettings())
    decisions = [clusterer.add(n, r["title"], "", T0 + 60 * n) for n, r in enumerate(rows)]
    first_sbarro = next(n for n, r in enumerate(rows) if r["event"] == "sbarro")
    refused = decisions[first_sbarro]
    assert refused.opened
    (event_id, score, reason), *_ = refused.near
    assert event_id == 0 and score >= GroupingSettings().short_threshold
    assert reason.startswith("different subject: Sbarro vs ") and "Gox" in reason
    # A report of the exchange joined on its name, which no other event holds.
    assert "Gox" in decisions[1].evidence
    # Later pizza-chain reports joined their own event on "Sbarro".
    assert all("Sbarro" in d.evidence for d in decisions[first_sbarro + 1 :])


def test_a_shared_name_prevents_the_veto() -> None:
    """A headline naming a new person and the event's company is not vetoed: they share a
    name, even if a common one."""
    clusterer = Clusterer(GroupingSettings())
    for n, title in enumerate(_rows()[:5]):
        clusterer.add(n, title["title"], "", T0 + 60 * n)
    decision = clusterer.add(
        50, "Karpeles says Mt. Gox bankruptcy filing was unavoidable", "", T0 + 900
    )
    assert not decision.opened and decision.event_id == 0, decision


def test_common_words_are_no_names_in_title_case() -> None:
    finder = evidence.NameFinder()
    names = finder.names("Pizza Chain Sbarro Files For Bankruptcy Protection Again")
    assert list(names.values()) == ["Sbarro"]
    # The first word of a headline counts when it is no common word.
    assert list(finder.names("Sbarro files for bankruptcy").values()) == ["Sbarro"]
    assert finder.names("Files for bankruptcy") == {}


def test_the_stream_teaches_which_words_are_common() -> None:
    """A word missing from the list is common once the stream writes it in lower case."""
    finder = evidence.NameFinder()
    word = "Zorbling"
    assert word.lower() not in evidence.COMMON_WORDS
    assert not finder.is_common(word)
    for _ in range(3):
        finder.observe(f"Engineers report the {word.lower()} of a bridge in the storm")
    assert finder.is_common(word)
    # Title-case headlines teach nothing: every word is capitalised there.
    other = evidence.NameFinder()
    other.observe("Engineers Report The Zorbling Of A Bridge In The Storm")
    assert other.case == {}


def test_a_name_written_two_ways_is_no_different_subject() -> None:
    """A subject inside the other side's ("MtGox" and "Gox") is one name, not a conflict;
    the veto stands for names that share nothing."""
    assert evidence.veto_of(["MtGox"], ["Gox"]) is None
    assert evidence.veto_of(["Gox's"], ["Karpeles", "MtGox"]) is None
    veto = evidence.veto_of(["Sbarro"], ["Karpeles", "Gox"])
    assert veto is not None and veto.reason() == "different subject: Sbarro vs Karpeles, Gox"
    # Two letters inside a name prove nothing ("Al" is in "Alibaba").
    assert evidence.veto_of(["Al"], ["Alibaba"]) is not None


def test_words_that_start_a_sentence_teach_nothing() -> None:
    """In "... Think So. Be Bossier." the word after the full stop is capitalised as a
    sentence's first word: it is not counted as written capitalised mid-sentence."""
    finder = evidence.NameFinder()
    finder.observe("Critics call the ban silly. Zorbling stays in the shops: Quorpit says no")
    assert "zorbling" not in finder.case and "quorpit" not in finder.case
    finder.observe("The shops keep Zorbling on the shelves for now")
    assert finder.case["zorbling"] == [0, 1]


def test_common_words_list_is_the_documented_size() -> None:
    lines = evidence.COMMON_WORDS_FILE.read_text(encoding="utf-8").split()
    assert len(lines) == len(set(lines)) >= evidence.COMMON_WORDS_COUNT
    assert all(w == w.lower() for w in lines)
    listed = evidence.load_common_words()
    assert listed == text.STOPWORDS | set(lines[: evidence.COMMON_WORDS_COUNT])
    assert {"bankruptcy", "files", "pizza"} <= listed and "sbarro" not in listed


def test_names_are_no_inflections_titles_initials_or_codes() -> None:
    """General rules of the name finder (decision 0179), none about one story."""
    finder = evidence.NameFinder()
    # An inflected form of a common word is common ("leverage", "bossy", "unveil").
    for word in ("Leverages", "Bossier", "Unveils", "Unveiling"):
        assert finder.is_common(word), word
    assert not finder.is_common("Karpeles") and not finder.is_common("Sbarro")
    # Titles, roles and company designators are written beside names, not names.
    for word in ("Inc", "Corp", "Mt", "Sen", "CEO's", "Gen"):
        assert finder.is_common(word), word
    # Initials and codes are names (they can agree) but tell no subject, unless the alias
    # table knows them as a country.
    for word in ("USB", "BoE", "MPs", "Q4", "MH370"):
        assert not finder.is_common(word) and not finder.is_subject(word), word
    for word in ("UK", "DPRK", "CarPlay", "UniCredit", "Sbarro"):
        assert finder.is_subject(word), word
    # A compound written with a lower-case part is an adjective ("OEM-agnostic", "US-led").
    assert finder.is_common("OEM-agnostic") and not finder.is_common("Hewlett-Packard")
    assert finder.names("Dick's Sporting Goods Q4 Profit Leverages Online Sales") == {}
    assert list(finder.names("Pimco Inc Names New CEO").values()) == ["Pimco"]


def test_an_entity_in_many_events_is_not_specific() -> None:
    live = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5}.get
    postings = {7: [1, 2, 3, 4, 5], 8: [1, 2]}
    assert not evidence.is_specific(postings, live, 7, set())
    assert evidence.is_specific(postings, live, 8, set())
    # Forgotten events do not count, nor the events compared.
    assert evidence.is_specific(postings, {1: 1}.get, 7, set())
    assert evidence.is_specific(postings, live, 7, {1, 2})


def test_subjects_differ_between_events() -> None:
    """The merge veto: two events with their own subjects and no name in common differ;
    once one of them names the other's subject they do not."""
    clusterer = Clusterer(GroupingSettings())
    for n, row in enumerate(_rows()[:5]):
        clusterer.add(n, row["title"], "", T0 + 60 * n)
    clusterer.add(100, "Sbarro pizza chain files for bankruptcy protection", "", T0 + 3600)
    gox, sbarro = clusterer.events[0], clusterer.events[100]
    assert clusterer._subjects_differ(gox, sbarro)
    assert not Clusterer(GroupingSettings(subject_veto=False))._subjects_differ(gox, sbarro)
    joined = clusterer.add(101, "Sbarro follows Mt. Gox into bankruptcy", "", T0 + 3700)
    assert not joined.opened
    assert not clusterer._subjects_differ(gox, sbarro)


def test_alias_table_is_data_with_its_sources(tmp_path: Path) -> None:
    header = text.ALIASES_FILE.read_text(encoding="utf-8")
    assert "UN World Population" in header and "ISO 3166-1" in header
    for variant, canonical in {
        "kyiv": "ukraine",
        "kiev": "ukraine",
        "dprk": "north korea",
        "burma": "myanmar",
        "cote d'ivoire": "ivory coast",
        "moscow": "russia",
    }.items():
        assert text.ALIASES[variant] == canonical
    table = tmp_path / "aliases.txt"
    table.write_text("# comment\nfreedonia | fredonia|Fredonië\n\nsylvania\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"aliases.txt:4: an alias line needs"):
        text.load_aliases(table)
    table.write_text("freedonia | fredonia|Fredonië\n", encoding="utf-8")
    assert text.load_aliases(table) == {
        "freedonia": "freedonia",
        "fredonia": "freedonia",
        "fredonie": "freedonia",
    }


def test_aliases_join_capitals_and_adjectives_to_their_country() -> None:
    feats = text.extract(
        "Kyiv and Warsaw sign a grain deal",
        "",
        lead_words=80,
        body_words=100,
        title_weight=3.0,
        body_weight=0.3,
    )
    assert {"@ukraine", "@poland"} <= set(feats.entities)
    polish = text.extract(
        "Ukrainian and Polish ministers meet",
        "",
        lead_words=80,
        body_words=100,
        title_weight=3.0,
        body_weight=0.3,
    )
    assert {"@ukraine", "@poland"} <= set(polish.entities)


def test_no_veto_when_turned_off() -> None:
    """With subject_veto off nothing is vetoed: the candidate the veto refused for the
    pizza chain's first report is joined instead, and no near miss holds a veto."""
    rows = _rows()
    first_sbarro = next(n for n, r in enumerate(rows) if r["event"] == "sbarro")
    on, off = Clusterer(GroupingSettings()), Clusterer(GroupingSettings(subject_veto=False))
    for n, row in enumerate(rows[: first_sbarro + 1]):
        vetoed = on.add(n, row["title"], "", T0 + 60 * n)
        joined = off.add(n, row["title"], "", T0 + 60 * n)
        assert all(not reason.startswith(evidence.VETO_PREFIX) for _, _, reason in joined.near)
    refused = [e for e, _, reason in vetoed.near if reason.startswith(evidence.VETO_PREFIX)]
    assert refused and vetoed.opened
    assert not joined.opened and joined.event_id == refused[0]


def test_events_show_explain_and_near(cli_env, tmp_path):
    """As a user runs them: the pizza chain's event tells the veto that kept its first
    report out of the exchange's event, and `events near` lists the exchange's event."""
    out = tmp_path / "assignments.jsonl"
    result = newswatch("replay", str(BANKRUPTCIES), "--assignments", str(out), env=cli_env)
    assert result.returncode == 0, result.stderr
    assigned = {r["id"]: r["event_id"] for r in map(json.loads, out.read_text().splitlines())}
    gox, sbarro = assigned["b1"], assigned["b6"]
    assert gox != sbarro and assigned["b9"] == sbarro and assigned["b5"] == gox

    shown = newswatch("events", "show", str(sbarro), "--explain", env=cli_env)
    assert shown.returncode == 0, shown.stderr
    assert f"kept out of event {gox} (score" in shown.stdout
    assert "different subject: Sbarro vs " in shown.stdout
    assert "specific evidence (rare in the window): Sbarro" in shown.stdout
    gox_text = newswatch("events", "show", str(gox), "--explain", env=cli_env).stdout
    # "Mt" is the abbreviation written before the name, not a name of its own.
    assert "specific evidence (rare in the window): Gox\n" in gox_text

    near = newswatch("events", "near", str(sbarro), env=cli_env)
    assert near.returncode == 0, near.stderr
    heading, first, reason, *rest = near.stdout.splitlines()
    assert heading == f"events the articles of event {sbarro} were kept out of:"
    assert f"event {gox:>8}" in first and "Mt. Gox files for bankruptcy" in first
    assert "different subject: Sbarro vs" in reason
    # Nothing of the exchange's event was kept out of the pizza chain's.
    assert "kept out of event" not in "".join(rest)
    as_json = _near_json(sbarro, cli_env)
    assert as_json[0]["event_id"] == gox and as_json[0]["direction"] == "kept_out_of_it"
    # As many articles as the explanations of the pizza chain's event name the exchange's.
    kept_out = shown.stdout.count(f"kept out of event {gox} (score")
    assert as_json[0]["articles"] == kept_out >= 1
    assert as_json[0]["score"] >= GroupingSettings().short_threshold
    scores = [n["score"] for n in as_json]
    assert scores == sorted(scores, reverse=True)

    # The other way: the exchange's event kept the pizza chain's first report out.
    back = newswatch("events", "near", str(gox), env=cli_env)
    assert back.returncode == 0, back.stderr
    assert f"events whose articles were kept out of event {gox}:" in back.stdout
    (entry,) = [n for n in _near_json(gox, cli_env) if n["direction"] == "kept_out_of_this"]
    assert entry["event_id"] == sbarro and entry["articles"] == kept_out
    assert entry["reason"].startswith("different subject: Sbarro vs ")
    assert entry["score"] == as_json[0]["score"]

    missing = newswatch("events", "near", "999999", env=cli_env)
    assert missing.returncode == 1 and "no event with id 999999" in missing.stderr


def _near_json(event_id: int, env: dict[str, str]) -> list[dict[str, object]]:
    run = newswatch("events", "near", str(event_id), "--json", env=env)
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_near_reads_only_well_formed_entries() -> None:
    from newswatch.api.events import _near_of

    assert _near_of(None) == [] and _near_of({"near": "x"}) == []
    entries = _near_of({"near": [{"event": 3, "score": 0.3, "reason": "r"}, {"event": "x"}, 5]})
    assert entries == [{"event": 3, "score": 0.3, "reason": "r"}]


def test_event_subjects_are_its_rare_names() -> None:
    """An event's subjects: its names rare in the window, not its common words, initials
    or codes; once more than COMMON_EVENTS other events carry a name it is no subject."""
    clusterer = Clusterer(GroupingSettings())
    clusterer.add(1, "the rain in the plain stays mainly", "", T0)
    assert clusterer._event_subjects(clusterer.events[1], {1}) == {}
    clusterer.add(2, "Sbarro closes USB plant after Q4 loss", "", T0)
    assert list(clusterer._event_subjects(clusterer.events[2], {2}).values()) == ["Sbarro"]
    for n in range(3, 4 + evidence.COMMON_EVENTS):
        opened = clusterer.add(n, f"Sbarro {_OTHER_STORIES[n]}", "", T0 + n)
        assert opened.opened, opened
    assert clusterer._event_subjects(clusterer.events[2], {2}) == {}


# Headlines that share nothing but the name put in front of them.
_OTHER_STORIES = {
    3: "menu adds gluten free crust in Ohio",
    4: "mascot wins county fair costume prize",
    5: "delivery drivers vote on union in Texas",
    6: "ends sponsorship of minor league ballpark",
}


def _halves_module():
    """bench/grouping_halves.py as a module (the split and replay the figures come from)."""
    return bench_script("grouping_halves")


def test_halves_split_by_story_and_keep_ecb_topics_whole() -> None:
    halves = _halves_module()
    # Deterministic: SHA-256, not Python's salted hash.
    import hashlib

    label = "uci-dPhGU51DcrolUIMxbRm0InaHGA2XM"
    expected = halves.HALVES[hashlib.sha256(label.encode()).digest()[0] & 1]
    assert halves.half_of("uci-headlines-dev.jsonl", label) == expected
    # Both events of an ECB+ topic fall in one half; across topics both halves occur.
    topics = [f"ecb-{n}" for n in range(1, 46, 2)]
    for topic in topics:
        pair = {halves.half_of("ecbplus-dev.jsonl", f"{topic}_{k}") for k in ("ecb", "ecbplus")}
        assert len(pair) == 1, topic
    assert {halves.half_of("ecbplus-dev.jsonl", f"{t}_ecb") for t in topics} == set(halves.HALVES)


def test_halves_script_reports_both_halves(tmp_path: Path) -> None:
    """The script as run: per corpus, B³ of the whole file and of each half replayed alone
    (the halves' articles make up the file)."""
    import subprocess
    import sys

    from tests.conftest import SHARED_DATA, shared_corpus

    shared_corpus(SHARED_DATA / "grouping" / "ecbplus-dev.jsonl")
    script = Path(__file__).resolve().parents[1] / "bench" / "grouping_halves.py"
    run = subprocess.run(
        [sys.executable, str(script), "--json", "--corpus", "ecbplus-dev.jsonl"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    (line,) = run.stdout.splitlines()
    figures = json.loads(line)
    assert figures["corpus"] == "ecbplus-dev.jsonl"
    halves = _halves_module()
    rows = halves.load("ecbplus-dev.jsonl")
    # Each part replayed here on its own, its rows in file order: the script's figures are
    # those of the half alone, not of the half's articles within a replay of the file.
    for part in ("all", "tuning", "checking"):
        mine = [r for r in rows if part in ("all", halves.half_of("ecbplus-dev.jsonl", r["event"]))]
        clusterer = Clusterer(GroupingSettings())
        for i, r in enumerate(mine):
            clusterer.add(i, r["title"], r["text"], halves.timestamp(r))
        gold = {r["id"]: r["event"] for r in mine}
        found = {r["id"]: clusterer.resolve(clusterer.article_event[i]) for i, r in enumerate(mine)}
        assert figures[part] == pytest.approx(list(bcubed(gold, found)), abs=1e-9), part
    assert figures["gap"] == pytest.approx(figures["tuning"][2] - figures["checking"][2], abs=1e-4)
    sizes = {
        h: sum(halves.half_of("ecbplus-dev.jsonl", r["event"]) == h for r in rows)
        for h in halves.HALVES
    }
    assert sum(sizes.values()) == len(rows) and min(sizes.values()) > 0.3 * len(rows)


def test_near_both_ways_through_merges(engine) -> None:  # type: ignore[no-untyped-def]
    """`near_events` on both engines: candidates recorded under an id since merged away are
    read as their survivor (two merges deep, resolved in one query), the other direction
    finds the articles whose explanations name this event or one merged into it, and a
    malformed `near` is skipped, not an error."""
    from datetime import timedelta

    from sqlalchemy import insert, update

    from newswatch.api.events import KEPT_OUT_OF_IT, KEPT_OUT_OF_THIS, near_events
    from newswatch.store import event_lookup
    from newswatch.store.columns import utcnow
    from newswatch.store.db import session_scope
    from newswatch.store.models import Article, Event, table_of
    from tests.api_support import add_articles

    t0 = utcnow() - timedelta(days=30)
    a, b, c, x, joiner, stray, late = add_articles(engine, "wire", list("abcxjsl"), t0)
    window = timedelta(hours=72)
    # Published more than a window after every report of a and of c (split off it, reports
    # up to t0 + 1 h): no grouper could have compared it with a; the scan does not read it.
    [beyond] = add_articles(engine, "far", ["far"], t0 + window + timedelta(hours=2))
    # Seen later, but published within the window: its time is its publication.
    [backdated] = add_articles(engine, "back", ["back"], t0 + 2 * window)
    events = table_of(Event)
    with session_scope(engine) as session:
        for event_id, merged_into in ((a, None), (c, None), (b, c), (x, b)):
            session.execute(
                insert(events).values(
                    split_from=a if event_id == c else None,
                    id=event_id,
                    title=f"event {event_id}",
                    first_seen=t0,
                    last_seen=t0,
                    article_count=1,
                    source_count=1,
                    top_entities=[],
                    revision=1,
                    created_at=t0,
                    updated_at=t0,
                    merged_into=merged_into,
                )
            )
        explanations = {
            # joined a; had been kept out of x (now in c) and out of a missing event
            joiner: (
                a,
                [
                    {"event": x, "score": 0.31, "reason": "score below 0.4"},
                    {"event": 999_999, "score": 0.5, "reason": "gone"},
                    {"event": "x"},
                    5,
                ],
            ),
            stray: (a, "not a list"),
            # joined c; kept out of a by a veto
            late: (c, [{"event": a, "score": 0.45, "reason": "different subject: A vs C"}]),
            beyond: (c, [{"event": a, "score": 0.9, "reason": "out of the window"}]),
            backdated: (c, [{"event": a, "score": 0.2, "reason": "published in time"}]),
        }
        articles = table_of(Article)
        session.execute(
            update(articles)
            .where(articles.c.id == backdated)
            .values(published=t0 + window + timedelta(minutes=30))  # within c's span
        )
        # c was split off a and its reports are the latest: a's span reaches to them.
        session.execute(
            update(events).where(events.c.id == c).values(last_seen=t0 + timedelta(hours=1))
        )
        for article_id, (event_id, near) in explanations.items():
            session.execute(
                update(articles)
                .where(articles.c.id == article_id)
                .values(event_id=event_id, group_explain={"stage": "similar", "near": near})
            )
    with session_scope(engine) as session:
        assert event_lookup.resolve_events(session, [x, b, a, 999_999]) == {x: c, b: c, a: a}
        assert event_lookup.merged_aliases(session, c) == sorted([b, c, x])
        of_a = near_events(session, a, window=window)
        of_c = near_events(session, c, window=window)
    assert of_a is not None and of_c is not None
    assert [(n.direction, n.event_id, n.score, n.articles) for n in of_a] == [
        (KEPT_OUT_OF_IT, c, 0.31, 1),
        (KEPT_OUT_OF_THIS, c, 0.45, 2),  # late and backdated, not beyond
    ]
    assert [(n.direction, n.event_id, n.reason, n.articles) for n in of_c] == [
        # c's own articles are read whatever their time (closest first: "beyond", made up)
        (KEPT_OUT_OF_IT, a, "out of the window", 3),
        (KEPT_OUT_OF_THIS, a, "score below 0.4", 1),
    ]
    assert of_c[0].title == f"event {a}"


# Two elections of one council, five years apart, written for these tests: the same town,
# council and candidates, told in different words; what differs is the year.
ELECTION = (
    "Voters in Harwick returned Mayor Ellen Brandt and the Harwick council on Sunday in the "
    "{year} election, with turnout near {turnout} percent across the town's wards.",
    "Harwick's {year} council election ended with Ellen Brandt ahead of Tomas Rieger, "
    "officials said, after counting closed late in the evening.",
    "The {year} Harwick ballot gave Brandt a majority on the council; Rieger conceded and "
    "promised to work with the new members.",
)


def _election_reports(first: str, second: str) -> list[str]:
    """Six reports, alternating: three of an election in `first`, three in `second`, each
    of two sentences (long enough not to count as headlines, which never split)."""
    texts = [f"{a} {b}" for a, b in zip(ELECTION, ELECTION[1:] + ELECTION[:1], strict=True)]
    a = [t.format(year=first, turnout=61) for t in texts]
    b = [t.format(year=second, turnout=48) for t in texts]
    return [x for pair in zip(a, b, strict=True) for x in pair]


def _event_of(reports: list[str], settings: GroupingSettings) -> Clusterer:
    c = Clusterer(settings)
    for n, body in enumerate(reports):
        c.restore(n, 0, body[:70], body, T0 + n, opened=n == 0)
    return c


def test_main_year_and_groups_dated_apart() -> None:
    y = [frozenset({"#2009"}), frozenset({"#2009", "#2004"}), frozenset()]
    assert evidence.main_year(y) == "#2009"
    assert evidence.main_year([frozenset({"#2009"}), frozenset()]) is None  # one report
    assert evidence.main_year([frozenset({"#2009", "#2013"})] * 2) == "#2013"  # tie: latest
    other = [frozenset({"#2013"}), frozenset({"#2013"}), frozenset(), frozenset()]
    assert evidence.dated_apart(y, other)
    # One group recalls the other's year often: one story that looks back, not two.
    recalls = [frozenset({"#2013", "#2009"}), frozenset({"#2013"})]
    assert not evidence.dated_apart(y, recalls)
    assert not evidence.dated_apart(y, y)
    assert not evidence.dated_apart(y, [frozenset()] * 4)  # undated: no evidence either way


def test_reports_of_different_years_are_half_as_similar() -> None:
    years = [frozenset({"#2009"}), frozenset({"#2014"}), frozenset({"#2009", "#2014"}), frozenset()]
    factor = evidence.year_agreement(years)
    half = evidence.YEAR_CONFLICT_AFFINITY
    assert factor.tolist() == [
        [1.0, half, 1.0, 1.0],
        [half, 1.0, 1.0, 1.0],
        [1.0, 1.0, 1.0, 1.0],
        [1.0, 1.0, 1.0, 1.0],
    ]
    assert evidence.year_agreement([frozenset()] * 3) is None  # no year: no factor
    assert evidence.year_agreement([frozenset({"#2009"})] * 3 + [frozenset()]) is None


def test_two_elections_of_one_council_split_by_their_years() -> None:
    """The two groups name the same town and people, which alone keeps an event whole (even
    with every cut allowed); stating different years, they are two events."""
    anywhere = GroupingSettings(split_ncut=2.0)
    same = _event_of(_election_reports("2014", "2014"), anywhere)
    assert same._check_split(same.events[0]) is None
    c = _event_of(_election_reports("2009", "2014"), anywhere)
    members = list(c.events[0].members or [])
    split = c._check_split(c.events[0])
    assert split is not None
    assert sorted(split.moved) == [1, 3, 5]  # the 2014 reports; the 2009 ones keep the id
    # Reports of different years are half as similar in the check: a deeper cut between
    # the two groups than their words alone make.
    plain = _affinity(members, c.vocab.kind)
    factor = evidence.year_agreement(c._years(members))
    assert factor[1].tolist() == [0.5, 1.0, 0.5, 1.0, 0.5, 1.0]  # 2014 against 2009
    plain_score, plain_side = bipartition(plain, 3)
    assert plain_side is not None and sorted(np.flatnonzero(plain_side).tolist()) in (
        [0, 2, 4],
        [1, 3, 5],
    )
    assert split.score == pytest.approx(bipartition(plain * factor, 3)[0], abs=1e-4)
    assert split.score < plain_score - 0.1


def test_a_count_written_with_a_comma_is_no_year() -> None:
    """A count ("2,000 people") is no year: only a figure written without separator is, and the
    figure term itself stays "#2000" (its weight in the similarity is unchanged)."""
    c = Clusterer(GroupingSettings())
    crowd = c.features("Crowd at the dam", "About 2,000 people and 1,950 police gathered.")
    dated = c.features("Crowd at the dam", "The dam was built in 2013 by the province.")
    assert crowd.years == frozenset() and dated.years == frozenset({"#2013"})
    assert "#2000" in crowd.terms and "#1950" in crowd.terms
    both = c.features(None, "About 2,000 people and 1,950 police came, as in 2013.")
    assert both.years == frozenset({"#2013"})
    assert evidence.year_agreement([crowd.years, dated.years]) is None


def test_one_event_whose_groups_state_a_count_and_a_year_stays_whole() -> None:
    """Three reports say "2,000", three "2013": no two years, so the same names keep the
    event whole (read as years, "#2000" against "#2013" split it)."""
    c = _event_of(_election_reports("2,000", "2013"), GroupingSettings(split_ncut=2.0))
    assert c._check_split(c.events[0]) is None
    assert c._years(list(c.events[0].members or []))[0] == frozenset()


def test_a_copy_does_not_date_a_group() -> None:
    """One group: a report stating 2013 and its syndicated copy, three undated reports; the
    other: four reports stating 2009. Counted over originals, only one report states 2013:
    the first group is not dated, so the same names keep the event whole."""
    texts = [f"{a} {b}" for a, b in zip(ELECTION, ELECTION[1:] + ELECTION[:1], strict=True)]
    years = ("2013", "spring", "spring", "spring")
    a = [texts[n % 3].format(year=y, turnout=61) for n, y in enumerate(years)]
    b = [texts[n % 3].format(year="2009", turnout=48) for n in range(4)]
    reports = [(x, None) for pair in zip(a, b, strict=True) for x in pair] + [(a[0], 0)]
    c = Clusterer(GroupingSettings(split_ncut=2.0))
    for n, (body, copy_of) in enumerate(reports):
        c.restore(n, 0, body[:70], body, T0 + n, opened=n == 0, duplicate_of=copy_of)
    members = list(c.events[0].members or [])
    assert len(members) == 9 and members[-1].copy_of == 0 and members[-1].years == {"#2013"}
    assert c._check_split(c.events[0]) is None


def test_halves_script_lists_mixed_events_with_their_years() -> None:
    """`--mixes`: the events holding several gold stories, each with the years its reports
    state (the figures grouping reads), as found after a replay; pure events are left out."""
    halves = _halves_module()
    reports = _election_reports("2014", "2014")  # one year: nothing tells the two apart
    rows = [
        {"id": f"r{n}", "title": body[:70], "text": body, "published": None, "event": "ab"[n % 2]}
        for n, body in enumerate(reports)
    ]
    rows.append(
        {"id": "x", "title": "Ferry timetable", "text": "", "published": None, "event": "c"}
    )
    assert halves.mixes(rows) == [(0, {"a": (3, {"2014": 3}), "b": (3, {"2014": 3})})]
    assert halves.mixes(rows[:1] + rows[-1:]) == []


@pytest.mark.parametrize("path", ["add_many", "restore"])
def test_a_members_years_come_with_it_by_either_path(path: str) -> None:
    """Grouping an article and restoring it (start-up, failover) both keep the years it
    states (decision 0189); a count written with a separator is none."""
    c = Clusterer(GroupingSettings())
    body = "The council met in 2013 in the capital, and about 2,000 people attended the vote."
    if path == "add_many":
        event_id = c.add_many([(1, body[:40], body, T0)])[0].event_id
    else:
        event_id = 0
        c.restore(1, event_id, body[:40], body, T0, opened=True)
    members = c.events[event_id].members
    assert members is not None
    assert [m.years for m in members] == [frozenset({"#2013"})]
