"""Near-duplicate detection: MinHash over word 3-shingles with an LSH band index.

Token hashes are CRC32 (stable across processes, so stored signatures stay comparable after
a restart); shingle hashing and the permutations are numpy operations on the whole document.
"""

from __future__ import annotations

import zlib
from collections import defaultdict

import numpy as np

_TOKEN_CACHE_MAX = 500_000


EMPTY = np.uint32(0xFFFFFFFF)  # a bin no shingle fell into (never counted as a match)


class MinHasher:
    """One-permutation MinHash: each shingle hash goes to one of `num_perm` bins by its top
    bits, and the signature holds each bin's minimum. One hash per shingle instead of one per
    shingle and permutation: about ten times faster than classic MinHash at the same size,
    with the same Jaccard estimate for documents of more than a few dozen shingles."""

    def __init__(self, num_perm: int = 64, seed: int = 1):
        if num_perm & (num_perm - 1):
            raise ValueError("num_perm must be a power of two")
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.shift = np.uint64(64 - (num_perm.bit_length() - 1))
        self.mult = rng.integers(1 << 40, 1 << 63, dtype=np.uint64) | np.uint64(1)
        self.bins = np.arange(num_perm, dtype=np.uint64)
        self._ids: dict[str, int] = {}

    def _token_ids(self, tokens: list[str]) -> np.ndarray:
        ids = self._ids
        if len(ids) > _TOKEN_CACHE_MAX:
            ids.clear()
        out = list(map(ids.get, tokens))
        if None in out:
            for i, v in enumerate(out):
                if v is None:
                    t = tokens[i]
                    v = ids.get(t)
                    if v is None:
                        v = ids[t] = zlib.crc32(t.encode())
                    out[i] = v
        return np.fromiter(out, dtype=np.uint64, count=len(out))

    def signature(self, tokens: list[str]) -> np.ndarray | None:
        """The signature of the token 3-shingles; None when there are too few to mean much."""
        if len(tokens) < 3:
            return None
        t = self._token_ids(tokens)
        shingles = (t[:-2] << np.uint64(42)) ^ (t[1:-1] << np.uint64(21)) ^ t[2:]
        hashed = np.sort(shingles * self.mult)  # so each bin's first value is its minimum
        bins = hashed >> self.shift
        first = np.searchsorted(bins, self.bins)
        sig = np.full(self.num_perm, EMPTY, dtype=np.uint32)
        found = first < len(hashed)
        found[found] = bins[first[found]] == self.bins[found]
        sig[found] = (hashed[first[found]] & np.uint64(0xFFFFFFFE)).astype(np.uint32)
        return sig


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two signatures (bins empty in both are left out)."""
    used = (a != EMPTY) | (b != EMPTY)
    n = int(np.count_nonzero(used))
    return float(np.count_nonzero((a == b) & used)) / n if n else 0.0


class LSHIndex:
    """Band index: a candidate shares all rows of at least one band.

    With 16 bands of 4 rows, pairs at Jaccard 0.5 are found with probability 0.65 and at 0.7
    with 0.98; the signature comparison afterwards removes the false candidates.
    """

    def __init__(self, bands: int = 16, rows: int = 4):
        self.bands = bands
        self.rows = rows
        self.tables: list[dict[bytes, list[int]]] = [defaultdict(list) for _ in range(bands)]
        self.signatures: dict[int, np.ndarray] = {}

    def _keys(self, sig: np.ndarray) -> list[bytes]:
        r = self.rows
        raw = sig.tobytes()
        return [raw[i * r * 4 : (i + 1) * r * 4] for i in range(self.bands)]

    def query(self, sig: np.ndarray, threshold: float) -> tuple[int, float] | None:
        """The most similar stored key at estimated Jaccard ≥ threshold (the oldest on ties).

        The candidates are compared in one numpy operation: boilerplate-heavy pages can share
        bands with hundreds of others, and comparing them one by one cost milliseconds."""
        found: set[int] = set()
        for table, key in zip(self.tables, self._keys(sig), strict=True):
            members = table.get(key)
            if members:
                found.update(members)
        if not found:
            return None
        keys = sorted(found)
        stack = np.stack([self.signatures[k] for k in keys])
        used = (stack != EMPTY) | (sig != EMPTY)
        same = np.count_nonzero((stack == sig) & used, axis=1)
        scores = same / np.maximum(np.count_nonzero(used, axis=1), 1)
        best = int(np.argmax(scores))
        score = float(scores[best])
        return (keys[best], score) if score >= threshold else None

    def insert(self, key: int, sig: np.ndarray) -> None:
        self.signatures[key] = sig
        for table, band in zip(self.tables, self._keys(sig), strict=True):
            table[band].append(key)

    def remove(self, key: int) -> None:
        sig = self.signatures.pop(key, None)
        if sig is None:
            return
        for table, band in zip(self.tables, self._keys(sig), strict=True):
            members = table.get(band)
            if members is not None:
                members.remove(key)
                if not members:
                    del table[band]

    def __len__(self) -> int:
        return len(self.signatures)
