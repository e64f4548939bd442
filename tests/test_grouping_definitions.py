"""Grouping's vectorised loops against plain definitions of what they compute, on real
articles of a dev corpus and on edge cases (MinHash has its own in test_grouping_minhash.py).
Each loop has one implementation; these definitions are the readable statement of it."""

from __future__ import annotations

import json
import math
import random
from array import array
from collections import Counter

import numpy as np
import pytest

from newswatch.grouping import cluster, text
from newswatch.grouping.cluster import Clusterer
from newswatch.grouping.minhash import LSHIndex, MinHasher, token_hashes_many
from newswatch.grouping.settings import GroupingSettings
from newswatch.grouping.vocabulary import ENTITY, Sparse, Vocabulary
from tests.conftest import SHARED_DATA, shared_corpus

CORPUS = SHARED_DATA / "grouping" / "ecbplus-dev.jsonl"

EDGE_TEXTS = [
    "",
    "   \n\t ",
    "one",
    "Ünïcödé wörds — «quoted» “text” 2013 6.1 15,000 U.S. D.P.R.K. rock'n'roll l’été",
    "\x00\x01 control \x1f bytes \x7f",
    "مرحبا بالعالم هذا نص عربي " * 5,
    "中文文本没有空格但是有标点，。" * 3,
]


def articles(limit: int = 150) -> list[dict]:
    shared_corpus(CORPUS)
    with CORPUS.open(encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(limit), f, strict=False)]


def test_words_are_the_regex_matches() -> None:
    for source in EDGE_TEXTS + [r["text"] for r in articles(60)] + [r["title"] for r in articles()]:
        for limit in (None, 0, 1, 7, 100, 10**6):
            assert text.words_of(source, limit) == text.WORD.findall(source)[:limit]


def test_terms_add_the_weight_of_each_word() -> None:
    for row in articles():
        words = text.words_of(row["text"])
        for weight in (3.0, 0.3):
            expected: dict[str, float] = {"seed": 1.0}
            for w in words:
                term = "" if w.lower() in text.STOPWORDS or len(w) < 2 else text.stem(w.lower())
                if term:
                    expected[term] = expected.get(term, 0.0) + weight
            terms = {"seed": 1.0}
            text._add_terms(terms, words, weight)
            assert terms.keys() == expected.keys()
            assert list(terms.values()) == pytest.approx(list(expected.values()), rel=1e-12)


def test_aliases_and_names_become_entities() -> None:
    words = text.words_of("Talks between North Korea and the DPRK envoy in Seoul, said the UN")
    found: dict[str, str] = {}
    text._entities(words, found)
    assert found["@north korea"] == "North Korea" and found["@south korea"] == "Seoul"
    assert "@united nations" in found and "@talk" not in found
    assert found["@" + text.name_key("Talks")] == "Talks"  # a capitalised word is a name


def tfidf_by_definition(
    terms: dict[str, float], entities: dict[str, str], df: dict[str, int], docs: int
) -> dict[str, float]:
    """idf = log((docs + 1) / (df + 1)) + 1; tf 1 + log tf (below 1 as it is); entities
    weigh 1.5; the 64 heaviest, unit length."""
    weights = {}
    for key, tf in terms.items():
        idf = math.log((docs + 1) / (df.get(key, 0) + 1)) + 1
        weights[key] = idf * (1 + math.log(tf) if tf >= 1 else tf)
    for key in entities:
        weights[key] = 1.5 * (math.log((docs + 1) / (df.get(key, 0) + 1)) + 1)
    top = sorted(weights.items(), key=lambda kv: -kv[1])[:64]
    norm = math.sqrt(sum(v * v for _, v in top)) or 1.0
    return {k: v / norm for k, v in top}


def spelt_out(vocab: Vocabulary, vec: Sparse) -> dict[str, float]:
    """A sparse vector as term -> weight, in its order."""
    terms = [vocab.terms[i] for i in vec.ids.tolist()]
    return dict(zip(terms, vec.weights.tolist(), strict=True))


def test_tfidf_vector_is_its_definition() -> None:
    clusterer = Clusterer(GroupingSettings())
    vocab = Vocabulary()
    for docs, row in enumerate(articles(), start=1):
        feats = clusterer.features(row["title"], row["text"])
        sparse, rare = cluster._tfidf(feats.terms, feats.entities, vocab, docs, 1.5, 64, 16, 3.0)
        vec = spelt_out(vocab, sparse)
        assert all(vocab.df_of(k) >= 1 for k in (*feats.terms, *feats.entities))
        df = {t: vocab.df_of(t) for t in vocab.terms}
        expected = tfidf_by_definition(feats.terms, feats.entities, df, docs)
        assert set(vec) == set(expected) or len(vec) == 64  # ties at the cut may differ
        for key, value in vec.items():
            assert value == pytest.approx(expected.get(key, value), rel=1e-9)
        assert sum(v * v for v in vec.values()) == pytest.approx(1.0)
        assert [vocab.terms[i] for i in rare] == [k for k in vec if df[k] <= 3.0][:16]
    size = len(vocab)
    empty, no_rare = cluster._tfidf({}, {}, vocab, docs, 1.5, 64, 16, 2.0)
    assert len(empty) == 0 and no_rare == [] and len(vocab) == size


def test_sparse_arithmetic_is_its_definition() -> None:
    rng = random.Random(7)
    vocab = Vocabulary(capacity=16)  # grows as terms come
    keys = [f"t{i}" for i in range(300)] + [f"@n{i}" for i in range(40)] + ["#24", "#6.1"]

    def sparse(d: dict[str, float]) -> Sparse:
        return Sparse(vocab.lookup(d).astype(np.int32), np.array(list(d.values()), float))

    def in_id_order(d: dict[str, float]) -> Sparse:
        return sparse(dict(sorted(d.items(), key=lambda kv: vocab.ids[kv[0]])))

    for _ in range(200):
        a = {k: rng.random() for k in rng.sample(keys, rng.randint(0, 120))}
        b = {k: rng.random() for k in rng.sample(keys, rng.randint(0, 200))}
        dot = sum(a[k] * b[k] for k in a if k in b)
        assert vocab.dot(sparse(a), sparse(b)) == pytest.approx(dot, rel=1e-12)
        assert vocab.dots(sparse(a), [sparse(b), sparse(a), Sparse.empty()]) == pytest.approx(
            [dot, sum(v * v for v in a.values()), 0.0], rel=1e-12
        )
        total = {k: a.get(k, 0.0) + b.get(k, 0.0) for k in a | b}
        for summed in (vocab.add(in_id_order(b), sparse(a)), vocab.total([sparse(a), sparse(b)])):
            assert spelt_out(vocab, summed) == pytest.approx(total)
            assert (np.diff(summed.ids) > 0).all()  # in id order
        assert (vocab.scratch == 0).all()  # the scratch array is left clean
        entities = {k: v for k, v in a.items() if k[0] == "@"}
        assert spelt_out(vocab, vocab.of_kind(sparse(a), ENTITY)) == entities
        ties = {k: float(rng.randint(0, 5)) for k in a}
        for n in (0, 3, 1000):
            expected = sorted(ties.items(), key=lambda kv: -kv[1])[:n]  # stable: ties in order
            assert list(spelt_out(vocab, sparse(ties).top(n)).items()) == expected
            kept = {k for k, _ in expected}
            pruned = spelt_out(vocab, in_id_order(ties).pruned(n))
            assert set(pruned) == kept or n < len(ties)  # ties at the cut may differ
        probe = vocab.lookup(keys)
        weights = in_id_order(a).weight_of(probe)
        assert weights.tolist() == [a.get(k, 0.0) for k in keys]
    assert vocab.entity_cosine(sparse({"a": 1.0}), sparse({"@x": 1.0})) == -1.0
    cos = vocab.entity_cosine(sparse({"@x": 3.0, "@y": 4.0, "a": 9.0}), sparse({"@x": 1.0}))
    assert cos == pytest.approx(0.6)


def test_postings_and_votes_are_their_definition() -> None:
    rng = random.Random(11)
    postings: dict[int, array[int]] = {}
    history: dict[int, list[int]] = {}
    terms = list(range(50))  # term ids
    for _ in range(2000):
        event = rng.randint(1, 400) * 10**9  # ids past 32 bits
        chosen = rng.sample(terms, rng.randint(1, 8))
        cluster._post_terms(postings, event, chosen, cluster._new_posting, 32)
        for term in chosen:
            seen = history.setdefault(term, [])
            if not seen or seen[-1] != event:
                seen.append(event)
    assert {t: list(p) for t, p in postings.items()} == {t: h[-32:] for t, h in history.items()}
    for _ in range(200):
        asked = rng.sample([*terms, 999], rng.randint(0, 20))  # 999: no posting
        found = Counter(e for t in asked for e in postings.get(t, ()))
        for n in (0, 1, 12, 10_000):
            assert cluster._top_votes(postings, asked, n) == [e for e, _ in found.most_common(n)]


def cosine(a: dict[str, float], b: dict[str, float]) -> float:
    na = math.sqrt(sum(v * v for v in a.values())) or 1.0
    nb = math.sqrt(sum(v * v for v in b.values())) or 1.0
    return sum(a[k] * b[k] for k in a if k in b) / (na * nb)


def test_affinity_and_cut_are_their_definition() -> None:
    clusterer = Clusterer(GroupingSettings())
    members = []
    for i, row in enumerate(articles(60)):
        vec, _ = clusterer._learn_vector(clusterer.features(row["title"], row["text"]))
        members.append(cluster.Member(i, vec, 0.0, False, False))
    rng = random.Random(3)
    for _ in range(30):
        group = rng.sample(members, rng.randint(2, 30))
        vectors = [spelt_out(clusterer.vocab, m.vector) for m in group]
        w = cluster._affinity(group, clusterer.vocab.kind)
        for i, a in enumerate(vectors):
            names_a = {k: v for k, v in a.items() if k[0] in "@#"}
            for j, b in enumerate(vectors):
                names_b = {k: v for k, v in b.items() if k[0] in "@#"}
                expected = 0.0 if i == j else cosine(a, b) + cosine(names_a, names_b)
                assert w[i, j] == pytest.approx(expected, abs=1e-9)
        if len(group) < 6:
            continue
        score, side = cluster.bipartition(w, 3)
        assert side is not None and 3 <= side.sum() <= len(group) - 3
        cut = w[side][:, ~side].sum()
        degree = w.sum(axis=1) + 1e-12
        assert score == pytest.approx(cut / degree[side].sum() + cut / degree[~side].sum())
    # Two clear groups: the cut finds them.
    w = np.zeros((6, 6))
    w[:3, :3] = w[3:, 3:] = 1.0
    w[0, 3] = w[3, 0] = 0.01
    np.fill_diagonal(w, 0.0)
    score, side = cluster.bipartition(w, 3)
    assert side is not None and sorted(np.flatnonzero(side).tolist()) in ([0, 1, 2], [3, 4, 5])
    assert score < 0.01
    assert cluster.bipartition(w, 4) == (math.inf, None)


def test_lsh_candidates_share_a_whole_band() -> None:
    hasher = MinHasher()
    texts = [f"{r['title']} {r['text']}".lower() for r in articles(120)]
    # Copies with small edits, so that bands collide.
    texts += [t[: len(t) // 2] + " an edit " + t[len(t) // 2 :] for t in texts[:40]]
    hashes, counts = token_hashes_many(texts)  # as Clusterer._sign signs them
    matrix = hasher.signatures(hashes, counts)
    signatures = [row for row, n in zip(matrix, counts.tolist(), strict=True) if n >= 30]
    index = LSHIndex()

    def by_definition(sig: np.ndarray, stored: dict[int, np.ndarray]) -> set[int]:
        rows = sig.reshape(index.bands, index.rows)
        return {
            k
            for k, other in stored.items()
            if (other.reshape(index.bands, index.rows) == rows).all(axis=1).any()
        }

    stored: dict[int, np.ndarray] = {}
    for key, sig in enumerate(signatures):
        assert index.candidates(sig) == by_definition(sig, stored)
        index.insert(key, sig)
        stored[key] = sig
    assert sum(len(index.candidates(s)) > 1 for s in signatures) >= 30
    for key in range(0, len(signatures), 3):
        index.remove(key)
        del stored[key]
    for sig in signatures:
        assert index.candidates(sig) == by_definition(sig, stored)


def test_a_batch_decides_as_articles_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """add_many (features, signatures and TF-IDF vectors of the whole batch first) takes the
    decisions of add() called on each article in turn: events, copies, scores, merges and
    splits, on ECB+ reports with copies of some of them among them; with expiries inside a
    batch that compact the vocabulary (renumbering term ids), and the vocabulary and
    document frequencies the same at the end."""
    monkeypatch.setattr(cluster, "EXPIRE_EVERY", 50)
    monkeypatch.setattr(cluster, "DF_MAX", 3000)
    compactions: list[int] = []
    compact = Vocabulary.compact

    def counted(vocab: Vocabulary, used: np.ndarray) -> np.ndarray:
        compactions.append(len(vocab))
        return compact(vocab, used)

    monkeypatch.setattr(Vocabulary, "compact", counted)
    rows = [(r["title"], r["text"]) for r in articles(400)]
    rows += [(t + " (update)", b + " More to follow.") for t, b in rows[::7]]
    start = 1_763_700_000.0
    stream = [(i, t, b, start + 90.0 * i) for i, (t, b) in enumerate(rows)]
    one, batched = Clusterer(), Clusterer()
    alone = [one.add(*item) for item in stream]
    together = []
    for first in range(0, len(stream), 64):
        together += batched.add_many(stream[first : first + 64])
    assert {d.stage for d in alone} == {"duplicate", "similar", "new"}
    assert any(d.merged for d in alone) or any(d.split for d in alone)
    for a, b in zip(alone, together, strict=True):
        assert (a.event_id, a.stage, a.score, a.duplicate_of, a.merged, a.evidence) == (
            b.event_id,
            b.stage,
            b.score,
            b.duplicate_of,
            b.merged,
            b.evidence,
        )
        assert (a.split and a.split.moved) == (b.split and b.split.moved)
        if a.signature is None:
            assert b.signature is None
        else:
            assert b.signature is not None and a.signature.tolist() == b.signature.tolist()
    assert one.article_event == batched.article_event
    assert one.vocab.terms == batched.vocab.terms and one.sweeps == batched.sweeps > 5
    assert len(compactions) >= 6  # each clusterer compacted its vocabulary 3+ times
    assert (one.vocab.df == batched.vocab.df).all() and one.docs == batched.docs
