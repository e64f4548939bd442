"""Near-duplicate hashing: the numpy code against plain-Python definitions, and the LSH index."""

from __future__ import annotations

import random

import numpy as np
import pytest

from newswatch.grouping import minhash
from newswatch.grouping.minhash import (
    EMPTY,
    MAX_BYTES,
    LSHIndex,
    MinHasher,
    jaccard,
    token_hashes_many,
)

M64 = (1 << 64) - 1
BASE = 0x100000001B3


def mix(h: int) -> int:
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & M64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & M64
    return h ^ (h >> 31)


def reference_hashes(text: str) -> list[int]:
    """Runs of bytes above 32 in the first MAX_BYTES of the UTF-8 text; each token's
    polynomial sum(b[i] * BASE**i), mixed."""
    raw = text.encode("utf-8")[:MAX_BYTES]
    tokens = bytes(b if b > 32 else 32 for b in raw).split(b" ")
    out = []
    for token in filter(None, tokens):
        h = sum(b * pow(BASE, i, 1 << 64) for i, b in enumerate(token)) & M64
        out.append(mix(h))
    return out


def reference_signature(hasher: MinHasher, hashes: list[int]) -> list[int]:
    """Each bin (top bits of the permuted shingle hash) keeps its smallest hash."""
    mult = int(hasher.mult)
    shift = 64 - (hasher.num_perm.bit_length() - 1)
    k1, k2 = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F
    low: dict[int, int] = {}
    for a, b, c in zip(hashes, hashes[1:], hashes[2:], strict=False):
        h = ((a * k1 + b * k2 + c) & M64) * mult & M64
        low[h >> shift] = min(low.get(h >> shift, M64 + 1), h)
    return [(low[i] & 0xFFFFFFFE) if i in low else int(EMPTY) for i in range(hasher.num_perm)]


def signed(hasher: MinHasher, texts: list[str], min_tokens: int = 30) -> list[np.ndarray]:
    """The signatures of the texts of at least `min_tokens` tokens, made as grouping makes
    them (Clusterer._sign: token_hashes_many, then MinHasher.signatures)."""
    hashes, counts = token_hashes_many(texts)
    matrix = hasher.signatures(hashes, counts)
    return [row for row, n in zip(matrix, counts.tolist(), strict=True) if n >= min_tokens]


def test_token_hashes_and_signature_match_their_definition() -> None:
    rng = random.Random(3)
    words = ["quake", "Ölpreis", "東京", "a", "x\x01y", "tab\there", "9,000", "—"]
    texts = ["", " ", "one", "one two", "  lead and trail  ", "é" * (MAX_BYTES // 2 + 7)]
    texts += [" ".join(rng.choice(words) for _ in range(rng.randint(0, 300))) for _ in range(40)]
    hasher = MinHasher()
    for text in texts:
        hashes = reference_hashes(text)
        found, counts = token_hashes_many([text])
        assert found.tolist() == hashes and counts.tolist() == [len(hashes)], text[:40]
        sig = hasher.signatures(found, counts)[0]
        assert sig.dtype == np.uint32
        if len(hashes) < 3:
            assert (sig == EMPTY).all()
        else:
            assert sig.tolist() == reference_signature(hasher, hashes), text[:40]


def test_a_batch_hashes_and_signs_each_text_as_alone() -> None:
    """token_hashes_many, signatures and LSHIndex.prepare over a batch: each text's tokens,
    signature, band keys and stored form are those of the text hashed on its own (the
    definitions above), whatever its neighbours: empty texts, one or two tokens, texts cut
    at MAX_BYTES, white space at the joins."""
    rng = random.Random(11)
    words = ["quake", "Ölpreis", "東京", "a", "x\x01y", "9,000", "—", "tail\n"]
    texts = ["", "one", "one two", " lead ", "é" * (MAX_BYTES + 5), "", "x " * 5000]
    texts += [" ".join(rng.choice(words) for _ in range(rng.randint(0, 200))) for _ in range(30)]
    rng.shuffle(texts)
    hasher = MinHasher()
    hashes, counts = minhash.token_hashes_many(texts)
    assert counts.tolist() == [len(reference_hashes(t)) for t in texts]
    assert hashes.tolist() == [h for t in texts for h in reference_hashes(t)]
    matrix = hasher.signatures(hashes, counts)
    index = LSHIndex()
    for text, row, (_, keys, stored) in zip(texts, matrix, index.prepare(matrix), strict=True):
        alone = reference_hashes(text)
        if len(alone) < 3:
            assert (row == EMPTY).all(), text[:40]
            continue
        assert row.tolist() == reference_signature(hasher, alone), text[:40]
        one = LSHIndex().prepare(row[None, :].copy())[0]
        assert keys.tolist() == one[1].tolist() and stored.tolist() == one[2].tolist()


def test_lsh_finds_a_copy_and_forgets_removed_keys() -> None:
    hasher = MinHasher()
    text = " ".join(f"word{i}" for i in range(200))
    sig, copy, other = signed(
        hasher, [text, text + " with a short tail", " ".join(f"other{i}" for i in range(200))]
    )
    assert jaccard(sig, copy) > 0.9 and jaccard(sig, other) < 0.1
    lsh = LSHIndex()
    lsh.insert(1, sig)
    lsh.insert(2, sig)  # the same signature: every band bucket holds both
    lsh.insert(3, other)
    assert lsh.query(copy, 0.5) == (1, jaccard(sig, copy))  # the oldest on ties
    lsh.remove(1)
    assert lsh.query(copy, 0.5) == (2, jaccard(sig, copy))
    lsh.remove(2)
    lsh.remove(2)  # unknown keys are ignored
    assert lsh.query(copy, 0.5) is None and len(lsh) == 1
    assert lsh.entries() == lsh.bands  # the removed keys' entries are gone


def test_lsh_merged_entries_answer_as_fresh_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries merged into the sorted arrays (every few inserts here) and removed keys whose
    entries are dead there: candidates are still those sharing a whole band."""
    monkeypatch.setattr(minhash, "FRESH_ENTRIES", 16 * 5)
    hasher = MinHasher()
    rng = random.Random(5)
    words = [f"w{i}" for i in range(400)]
    base = [" ".join(rng.choices(words, k=120)) for _ in range(30)]
    # Copies with an edit each, so that some bands collide and others do not.
    texts = base + [t.replace(t.split()[rng.randrange(100)], "edit", 1) for t in base * 2]
    signatures = signed(hasher, texts)
    index = LSHIndex()
    stored: dict[int, np.ndarray] = {}

    def by_definition(sig: np.ndarray) -> set[int]:
        rows = sig.reshape(index.bands, index.rows)
        return {
            k
            for k, other in stored.items()
            if (other.reshape(index.bands, index.rows) == rows).all(axis=1).any()
        }

    for key, sig in enumerate(signatures):
        index.insert(key, sig)
        stored[key] = sig
        if key % 4 == 3:  # some keys go while others are merged
            gone = rng.choice(sorted(stored))
            index.remove(gone)
            del stored[gone]
        for probe in signatures[: key + 1 : 7]:
            assert index.candidates(probe) == by_definition(probe)
    assert sum(len(by_definition(s)) > 1 for s in signatures) >= 10  # bands did collide
    assert index.entries() == index.bands * len(stored)
    assert len(index) == len(stored)
