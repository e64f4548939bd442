"""The compiled inner loops of grouping (newswatch/grouping/_speedups.c) against their
pure-Python twins, on the same inputs: real articles from the dev corpora, edge cases and
wrong types; and the whole clusterer both ways on a corpus (same events)."""

from __future__ import annotations

import json
import math
import random
from array import array
from collections import deque
from collections.abc import Iterator

import numpy as np
import pytest

from newswatch.grouping import cluster, minhash, native, text
from newswatch.grouping.cluster import Clusterer
from newswatch.grouping.minhash import MinHasher
from newswatch.grouping.settings import GroupingSettings
from tests.conftest import SHARED_DATA, shared_corpus

fast = native.speedups
CORPUS = SHARED_DATA / "grouping" / "ecbplus-dev.jsonl"


def test_the_extension_is_built() -> None:
    # make/CI build it (gcc is there); without it a replay is about 1.5 times slower.
    assert fast is not None, "newswatch.grouping._speedups did not build or import"


def articles(limit: int = 150) -> list[dict]:
    shared_corpus(CORPUS)
    with CORPUS.open(encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(limit), f, strict=False)]


EDGE_TEXTS = [
    "",
    "   \n\t ",
    "one",
    "one two",
    "one two three",
    "Ünïcödé wörds — «quoted» “text” 2013 6.1 15,000 U.S. D.P.R.K. rock'n'roll l’été",
    "Ünïcödé " * 3000,  # past the bytes hashed
    "\x00\x01 control \x1f bytes \x7f",
    "مرحبا بالعالم هذا نص عربي " * 5,
    "中文文本没有空格但是有标点，。" * 3,
]


@pytest.fixture
def pure(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Grouping with every compiled function replaced by its twin."""
    monkeypatch.setattr(text, "speedups", None)
    monkeypatch.setattr(minhash, "speedups", None)
    monkeypatch.setattr(cluster, "speedups", None)
    for name in (
        "_dot",
        "_accumulate",
        "_count_keys",
        "_prefixed_cosine",
        "_top_votes",
        "_tfidf",
        "_top_items",
        "_setdefaults",
    ):
        monkeypatch.setattr(cluster, name, getattr(cluster, name + "_py"))
    monkeypatch.setattr(cluster, "_post_terms", cluster._post_py)
    yield


def test_words_and_terms_match_the_twins() -> None:
    for row in articles():
        for source in (row["title"], row["text"]):
            words = fast.words(source, -1, text._EDGE, text.WORD.findall)
            words_py: list[str] = []
            text._collect_words(source.split(), words_py)
            assert words == words_py == text.WORD.findall(source)
            for weight in (3.0, 1.0, 0.3):
                terms = {"seed": 1.0}
                terms_py = {"seed": 1.0}
                fast.add_terms(terms, words, weight, text._TERMS, text._term)
                text._add_terms_py(terms_py, words, weight)
                assert list(terms.items()) == list(terms_py.items())
            found: dict[str, str] = {}
            found_py: dict[str, str] = {}
            fast.entities(words, found, text._NAME_KEYS, text._entity_key, text._alias_entity)
            text._entities_py(words, found_py)
            assert list(found.items()) == list(found_py.items())
    for source in EDGE_TEXTS + [r["text"] for r in articles(40)]:
        for limit in (None, 0, 1, 7, 100, 10**6):
            expected = text.WORD.findall(source)[:limit]
            assert (
                fast.words(source, -1 if limit is None else limit, text._EDGE, text.WORD.findall)
                == expected
            )
            with pytest.MonkeyPatch.context() as m:
                m.setattr(text, "speedups", None)
                assert text.words_of(source, limit) == expected


def test_aliases_are_found_by_both() -> None:
    words = text.words_of("Talks between North Korea and the DPRK envoy in Seoul, said the UN")
    found: dict[str, str] = {}
    fast.entities(words, found, text._NAME_KEYS, text._entity_key, text._alias_entity)
    found_py: dict[str, str] = {}
    text._entities_py(words, found_py)
    assert found == found_py
    assert found["@north korea"] == "North Korea" and found["@south korea"] == "Seoul"
    assert "@united nations" in found


def test_minhash_matches_the_numpy_twin() -> None:
    hasher = MinHasher()
    texts = [f"{r['title']} {r['text']}".lower() for r in articles()] + EDGE_TEXTS
    for source in texts:
        for wanted in (3, 30, 10**9):
            count, sig = hasher.of_text(source, wanted)
            count_py, sig_py = hasher._of_text_py(source, wanted)
            assert count == count_py
            if sig_py is None:
                assert sig is None
            else:
                assert sig is not None and sig.dtype == sig_py.dtype
                assert sig.tolist() == sig_py.tolist()
    with pytest.raises(ValueError):
        fast.minhash("a b c d", 3, 58, 48, 3)  # 48 bins is not 2 ** (64 - 58)


def test_tfidf_matches_the_numpy_twin() -> None:
    clusterer = Clusterer(GroupingSettings())
    df: dict[str, int] = {}
    df_py: dict[str, int] = {}
    docs = 0
    for row in articles():
        feats = clusterer.features(row["title"], row["text"])
        docs += 1
        limit = max(2.0, 0.05 * docs) if docs >= 50 else math.inf
        args = (1.5, 64, 16, limit, True)
        vec, rare = fast.tfidf(feats.terms, feats.entities, df, docs, *args)
        vec_py, rare_py = cluster._tfidf_py(feats.terms, feats.entities, df_py, docs, *args)
        assert df == df_py
        assert list(vec) == list(vec_py) and rare == rare_py
        assert list(vec.values()) == pytest.approx(list(vec_py.values()), rel=1e-12)
        assert sum(v * v for v in vec.values()) == pytest.approx(1.0)
    # Without learning, df is left alone.
    before = dict(df)
    fast.tfidf(feats.terms, feats.entities, df, docs, 1.5, 64, 16, 2.0, False)
    assert df == before
    assert fast.tfidf({}, {}, df, docs, 1.5, 64, 16, 2.0, False) == ({}, [])


def test_dict_arithmetic_matches_the_twins() -> None:
    rng = random.Random(7)
    keys = [f"t{i}" for i in range(300)] + [f"@n{i}" for i in range(40)]
    for _ in range(200):
        a = {k: rng.random() for k in rng.sample(keys, rng.randint(0, 120))}
        b = {k: rng.random() for k in rng.sample(keys, rng.randint(0, 200))}
        assert fast.dot(a, b) == pytest.approx(cluster._dot_py(a, b), rel=1e-12)
        cos = fast.prefixed_cosine(a, b, "@")
        assert cos == pytest.approx(cluster._prefixed_cosine_py(a, b, "@"), rel=1e-12)
        target, target_py = dict(b), dict(b)
        fast.accumulate(target, a)
        cluster._accumulate_py(target_py, a)
        assert list(target) == list(target_py)
        assert list(target.values()) == pytest.approx(list(target_py.values()), rel=1e-15)
        names, names_py = dict(b), dict(b)
        fast.setdefaults(names, a)
        cluster._setdefaults_py(names_py, a)
        assert list(names.items()) == list(names_py.items())
        counts, counts_py = {"t1": 5}, {"t1": 5}
        fast.count_keys(counts, (a, b))
        cluster._count_keys_py(counts_py, (a, b))
        assert counts == counts_py
        ties = {k: float(rng.randint(0, 5)) for k in a}
        for n in (0, 3, 64, 1000):
            assert list(fast.top_items(ties, n).items()) == list(
                cluster._top_items_py(ties, n).items()
            )
    assert fast.prefixed_cosine({"a": 1.0}, {"@x": 1.0}, "@") == -1.0
    assert fast.prefixed_cosine({"@x": 0.0}, {"@x": 1.0}, "@") == 0.0


def test_postings_and_votes_match_the_twins() -> None:
    rng = random.Random(11)
    postings: dict[str, array[int]] = {}
    postings_py: dict[str, array[int]] = {}
    terms = [f"t{i}" for i in range(50)]
    for _ in range(2000):
        event = rng.randint(1, 400) * 10**9  # ids past 32 bits
        chosen = rng.sample(terms, rng.randint(1, 8))
        fast.post(postings, event, iter(chosen), cluster._new_posting, 32)
        cluster._post_py(postings_py, event, chosen, cluster._new_posting, 32)
    assert postings == postings_py
    assert all(1 <= len(p) <= 32 for p in postings.values())
    for _ in range(200):
        asked = rng.sample([*terms, "absent"], rng.randint(0, 20))
        for n in (0, 1, 12, 10_000):
            votes = fast.top_votes(postings, asked, n)
            assert votes == cluster._top_votes_py(postings, asked, n)
    # Any iterable of ints counts (lists, deques), ties in the order first found.
    plain = {"a": [3, 1, 2, 2], "b": deque([1, 5])}
    assert fast.top_votes(plain, ["a", "b"], 10) == [1, 2, 3, 5]
    assert cluster._top_votes_py(plain, ["a", "b"], 10) == [1, 2, 3, 5]


def test_wrong_types_raise_instead_of_crashing() -> None:
    with pytest.raises(TypeError):
        fast.dot({"a": 1.0}, [("a", 1.0)])
    with pytest.raises(TypeError):
        fast.dot({"a": "x"}, {"a": 1.0})
    with pytest.raises(TypeError):
        fast.top_votes({"a": ["x"]}, ["a"], 3)
    with pytest.raises(TypeError):
        fast.post({"a": [1, 2]}, 3, ["a"], cluster._new_posting, 32)
    with pytest.raises(TypeError):
        fast.words(3, -1, text._EDGE, text.WORD.findall)
    with pytest.raises(TypeError):
        fast.add_terms({}, ["word"], 1.0, {"word": 3}, text._term)
    with pytest.raises(ZeroDivisionError):
        fast.add_terms({}, ["new-word"], 1.0, {}, lambda w: 1 / 0)


def test_the_clusterer_decides_the_same_both_ways(pure: None) -> None:
    rows = articles(500)

    def run() -> list[tuple[int, str, int | None, tuple[int, ...]]]:
        c = Clusterer(GroupingSettings())
        out = []
        for i, row in enumerate(rows):
            d = c.add(i, row["title"], row["text"], 1_763_700_000.0 + 60 * i)
            out.append((d.event_id, d.stage, d.duplicate_of, tuple(d.merged)))
        return out + [(i, "final", c.resolve(c.article_event[i]), ()) for i in range(len(rows))]

    with_twins = run()
    # Undo the fixture for the second run: the compiled functions.
    for name in ("_dot", "_accumulate", "_count_keys", "_prefixed_cosine", "_top_votes"):
        setattr(cluster, name, getattr(fast, name.lstrip("_")))
    cluster._tfidf, cluster._top_items, cluster._post_terms = fast.tfidf, fast.top_items, fast.post
    cluster._setdefaults = fast.setdefaults
    text.speedups = minhash.speedups = cluster.speedups = fast
    compiled = run()
    assert compiled == with_twins
    assert len({e for e, *_ in compiled[: len(rows)]}) > 20  # events were formed, not one blob
    assert np.mean([s == "similar" for _, s, *_ in compiled[: len(rows)]]) > 0.3


def test_split_arithmetic_matches_the_numpy_twins() -> None:
    clusterer = Clusterer(GroupingSettings())
    members = []
    for i, row in enumerate(articles(60)):
        feats = clusterer.features(row["title"], row["text"])
        vec, _ = clusterer._learn_vector(feats)
        members.append(cluster.Member.of(i, vec, 0.0, False, False))
    rng = random.Random(3)
    for _ in range(40):
        group = rng.sample(members, rng.randint(2, 40))
        w = cluster._affinity(group)
        assert w == pytest.approx(cluster._affinity_py(group), abs=1e-12)
        assert np.all(np.diagonal(w) == 0) and np.allclose(w, w.T)
        for min_side in (1, 3):
            if len(group) < 2 * min_side:
                continue
            score, side = cluster.bipartition(w, min_side)
            score_py, side_py = cluster._bipartition_py(w, min_side)
            assert score == pytest.approx(score_py, rel=1e-9)
            assert side is not None and side_py is not None
            assert side.tolist() == side_py.tolist() or side.tolist() == (~side_py).tolist()
            assert min_side <= side.sum() <= len(group) - min_side
    # Two clear groups: the cut finds them.
    w = np.zeros((6, 6))
    w[:3, :3] = w[3:, 3:] = 1.0
    w[0, 3] = w[3, 0] = 0.01
    np.fill_diagonal(w, 0.0)
    score, side = cluster.bipartition(w, 3)
    assert side is not None and sorted(np.flatnonzero(side).tolist()) in ([0, 1, 2], [3, 4, 5])
    assert score < 0.01
    with pytest.raises(TypeError):
        fast.laplacian(np.zeros((3, 3), dtype=np.float32), 3)
    with pytest.raises(ValueError):
        fast.best_cut(w, 6, np.zeros(6), 4)


def test_lsh_bands_match_the_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = MinHasher()
    texts = [f"{r['title']} {r['text']}".lower() for r in articles(120)]
    # Copies with small edits, so that bands collide.
    texts += [t[: len(t) // 2] + " an edit " + t[len(t) // 2 :] for t in texts[:40]]
    signatures = [sig for t in texts if (sig := hasher.of_text(t, 30)[1]) is not None]
    compiled, twin = minhash.LSHIndex(), minhash.LSHIndex()
    for key, sig in enumerate(signatures):
        assert compiled.candidates(sig) == _without_speedups(monkeypatch, twin.candidates, sig)
        compiled.insert(key, sig)
        _without_speedups(monkeypatch, twin.insert, key, sig)
    assert compiled.tables == twin.tables
    assert sum(len(compiled.candidates(s)) > 1 for s in signatures) >= 30
    for key in range(0, len(signatures), 3):
        compiled.remove(key)
        twin.remove(key)
    for sig in signatures:
        assert compiled.candidates(sig) == _without_speedups(monkeypatch, twin.candidates, sig)
    with pytest.raises(ValueError):
        fast.lsh_candidates(compiled.tables, signatures[0][:10], 4)


def _without_speedups(monkeypatch: pytest.MonkeyPatch, fn, *args):  # type: ignore[no-untyped-def]
    with monkeypatch.context() as m:
        m.setattr(minhash, "speedups", None)
        return fn(*args)


def test_key_masks_spare_look_ups_but_not_results() -> None:
    rng = random.Random(13)
    keys = [f"term{i}" for i in range(3000)]
    for _ in range(300):
        a = {k: rng.random() for k in rng.sample(keys, rng.randint(0, 80))}
        b = {k: rng.random() for k in rng.sample(keys, rng.randint(0, 600))}
        mask_a, mask_b = bytearray(cluster.MASK_BYTES), bytearray(cluster.MASK_BYTES)
        target: dict[str, float] = {}
        fast.accumulate(target, b, mask_b)  # marks b's keys, as joining does
        assert target == b
        cluster._mark(mask_a, a)
        # Exactly the unmasked sum, both ways round.
        assert fast.dot(a, b, mask_a, mask_b) == fast.dot(a, b)
        assert fast.dot(a, b) == pytest.approx(cluster._dot_py(a, b), rel=1e-12)
        assert fast.dot(b, a, mask_b, mask_a) == fast.dot(b, a)
    # A clear bit means "not there": an unmarked mask hides every key.
    assert fast.dot({"x": 1.0}, {"x": 2.0}, None, bytearray(64)) == 0.0
    assert fast.dot({"x": 1.0}, {"x": 2.0}, None, bytearray(b"\xff" * 64)) == 2.0
    with pytest.raises(ValueError):
        fast.dot({"x": 1.0}, {"x": 2.0}, None, bytearray(3))
    with pytest.raises(BufferError):
        fast.accumulate({}, {"x": 1.0}, b"\x00" * 64)  # read-only


def test_every_centroid_key_is_marked(pure: None) -> None:
    """After a corpus run in each mode (merges and splits included), each event's mask holds
    the bit of each key of its centroid, and both modes built the same masks."""

    def run() -> dict[int, tuple[bytes, list[str]]]:
        c = Clusterer(GroupingSettings())
        for i, row in enumerate(articles(500)):
            c.add(i, row["title"], row["text"], 1_763_700_000.0 + 60 * i)
        return {e.id: (bytes(e.mask), list(e.centroid)) for e in c.events.values()}

    twins = run()
    cluster._dot, cluster._accumulate = fast.dot, fast.accumulate
    compiled = run()
    assert compiled == twins
    for mask, keys in compiled.values():
        expected = bytearray(len(mask))
        cluster._mark(expected, keys)
        assert all(m & e == e for m, e in zip(mask, expected, strict=True))
