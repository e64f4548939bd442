"""Near-duplicate detection: MinHash over word 3-shingles with an LSH band index.

Tokens are runs of non-space bytes of the lowercased UTF-8 text, hashed all at once with a
polynomial prefix sum (numpy, no Python loop over words, stable across processes so stored
signatures stay comparable after a restart); shingles and the permutation are numpy
operations on the whole document too.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EMPTY = np.uint32(0xFFFFFFFF)  # a bin no shingle fell into (never counted as a match)
# Bytes of text hashed at most (the beginning of a copy is enough to recognise it).
MAX_BYTES = 8192
_M64 = (1 << 64) - 1
_BASE = 0x100000001B3  # odd, so it has an inverse modulo 2**64
_POW = np.empty(MAX_BYTES + 1, dtype=np.uint64)
_INV = np.empty(MAX_BYTES + 1, dtype=np.uint64)
_inverse = pow(_BASE, -1, 1 << 64)
_p = _q = 1
for _i in range(MAX_BYTES + 1):
    _POW[_i], _INV[_i] = _p, _q
    _p, _q = _p * _BASE & _M64, _q * _inverse & _M64
_ONE = np.uint64(1)
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)
_NOT_EMPTY = np.uint32(0xFFFFFFFE)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_C1, _C2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_NO_HASH = np.uint64(_M64)
_LOW16 = np.uint32(0xFFFF)
# A signature with its band keys and the form the index stores it in (LSHIndex.prepare).
Prepared = tuple[np.ndarray, np.ndarray, np.ndarray]
_FULL16, _EMPTY16 = np.uint16(0xFFFE), np.uint16(0xFFFF)


def _mix(h: np.ndarray) -> np.ndarray:
    """Spread every input bit over the word (the finaliser of SplitMix64), in place."""
    h ^= h >> _S30
    h *= _C1
    h ^= h >> _S27
    h *= _C2
    h ^= h >> _S31
    return h


def token_hashes_many(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The 64-bit hash of each white-space separated token of each text (of its first
    MAX_BYTES bytes), all texts' in order in one array; and how many tokens each text has.

    Token j spanning bytes [s, e) of its text hashes to sum(b[i] * BASE**(i - s)): the
    difference of two prefix sums of b[i] * BASE**i (i counted from its text's start),
    scaled back by BASE**-s (all modulo 2**64). The texts are joined by a space, which no
    token spans, so a batch is hashed in one pass: on texts of a few hundred tokens each
    numpy call costs more in overhead than in arithmetic."""
    raws = [t.encode("utf-8")[:MAX_BYTES] for t in texts]
    raw = np.frombuffer(b" ".join(raws), dtype=np.uint8)
    n = len(raw)
    sizes = np.fromiter(map(len, raws), dtype=np.intp, count=len(raws)) + 1  # its space
    offsets = np.cumsum(sizes) - sizes
    # Each byte's place in its own text (the joining space is its text's last byte).
    local = np.arange(n + 1)
    local -= np.repeat(offsets, sizes)[: n + 1] if n else 0
    word = np.zeros(n + 2, dtype=np.bool_)
    np.greater(raw, 32, out=word[1:-1])  # white space and control bytes separate tokens
    edges = np.flatnonzero(word[1:] != word[:-1])
    starts, ends = edges[::2], edges[1::2]
    prefix = np.zeros(n + 1, dtype=np.uint64)
    (raw * _POW[local[:n]]).cumsum(out=prefix[1:])
    # In place from here (temporaries cost more than the arithmetic).
    h = prefix[ends]
    h -= prefix[starts]
    h *= _INV[local[starts]]
    counts = np.diff(np.searchsorted(starts, offsets), append=len(starts))
    return _mix(h), counts


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
        self.mult = rng.integers(1 << 40, 1 << 63, dtype=np.uint64) | _ONE

    def signatures(self, hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """One signature a row for the texts whose token hashes are `hashes` (`counts` of
        them each, in order; see token_hashes_many); a text of fewer than 3 tokens gets a
        row of EMPTY bins."""
        k, bins_per = len(counts), self.num_perm
        text = np.repeat(np.arange(k), counts)
        # A shingle is three tokens of one text. Order matters in a shingle: each position
        # has its own odd multiplier. (Integer arrays wrap around silently.)
        whole = text[:-2] == text[2:]
        hashed = hashes[:-2] * _K1
        hashed += hashes[1:-1] * _K2
        hashed += hashes[2:]
        hashed = hashed[whole]
        hashed *= self.mult
        # Each bin's minimum in one unbuffered ufunc pass (cheaper than sorting the hashes
        # and taking each bin's first); bins no shingle fell into stay EMPTY.
        bins = (hashed >> self.shift).astype(np.intp)
        bins += text[:-2][whole] * bins_per
        low = np.full(k * bins_per, _NO_HASH, dtype=np.uint64)
        np.minimum.at(low, bins, hashed)
        sig = low.astype(np.uint32)
        sig &= _NOT_EMPTY
        empty = np.ones(k * bins_per, dtype=np.bool_)
        empty[bins] = False
        sig[empty] = EMPTY
        return sig.reshape(k, bins_per)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two signatures (bins empty in both are left out)."""
    used = (a != EMPTY) | (b != EMPTY)
    n = int(np.count_nonzero(used))
    return float(np.count_nonzero((a == b) & used)) / n if n else 0.0


_BAND_MULT = np.random.default_rng(2).integers(1 << 40, 1 << 63, size=64, dtype=np.uint64) | _ONE
# Band entries gathered in a dict before they are merged into the sorted arrays: a merge
# moves every stored entry once, so it runs about once per thousand articles.
FRESH_ENTRIES = 16_384
# Rows of a block of the signature matrix (a power of two: a row's block is a shift away).
_BLOCK_SHIFT = 14
BLOCK_ROWS = 1 << _BLOCK_SHIFT
_BLOCK_MASK = BLOCK_ROWS - 1


class LSHIndex:
    """Band index: a candidate shares all rows of at least one band.

    With 16 bands of 4 rows, pairs at Jaccard 0.5 are found with probability 0.65 and at 0.7
    with 0.98; the signature comparison afterwards removes the false candidates.

    Compact (docs/decisions/0092-compact-grouping-state.md): each band of a signature is a
    32-bit key (a multiply-add of its rows, salted by the band, mixed, its low half), and the
    index is one sorted uint32 array of keys with, beside it, the row of the signature matrix
    and that row's generation: 12 bytes a band where a dict of bytes keys and tuples took about
    150. New entries wait in a small dict until FRESH_ENTRIES of them are merged in (the
    sorted arrays take no single insertions). A removed key's row gets a new generation, so
    its entries are dead at once and dropped at the next merge. A hash collision of two
    different bands only adds a candidate, which the signature comparison then judges.
    """

    def __init__(self, bands: int = 16, rows: int = 4):
        if bands * rows > len(_BAND_MULT):
            raise ValueError("at most 64 rows in all")
        self.bands = bands
        self.rows = rows
        self._mult = _BAND_MULT[:rows]
        self._salt = np.arange(bands, dtype=np.uint64) * _K1
        self._rows: dict[int, int] = {}  # key -> its row of the signature matrix
        # The signature matrix (see _stored) in blocks of BLOCK_ROWS rows: growing adds a
        # block, where one array would be copied whole (old and new side by side).
        self._blocks: list[np.ndarray] = []
        self._row_key = np.zeros(0, dtype=np.int64)
        self._row_gen = np.zeros(0, dtype=np.uint32)
        self._free: list[int] = []
        # The sorted entries: band key, row, the row's generation when inserted.
        self._keys = np.zeros(0, dtype=np.uint32)
        self._entry_rows = np.zeros(0, dtype=np.int32)
        self._entry_gens = np.zeros(0, dtype=np.uint32)
        # Entries not merged yet: band key -> the key (an int) or keys (a tuple) under it.
        self.fresh: dict[int, int | tuple[int, ...]] = {}
        self._fresh_entries = 0
        # The keys with entries in `fresh`, and their band keys (to take them out again).
        self._fresh_keys: dict[int, np.ndarray] = {}
        # The last signature banded, its band keys and stored form: an article's signature
        # is queried, then inserted (see prime).
        self._last: Prepared | None = None

    def prepare(self, signatures: np.ndarray) -> list[Prepared]:
        """Each row of `signatures` with its band keys and stored form, computed for all rows
        at once (a batch's signatures: numpy's overhead paid once), for `prime`."""
        keys = self.band_keys_many(signatures)
        stored = self.stored_many(signatures)
        return list(zip(signatures, keys, stored, strict=True))

    def prime(self, prepared: Prepared) -> None:
        """The signature queried and inserted next, with its band keys and stored form (from
        `prepare`): an article's signature is queried, then inserted."""
        self._last = prepared

    def band_keys_many(self, signatures: np.ndarray) -> np.ndarray:
        """The band keys of each row of `signatures` (a row of keys each)."""
        rows = signatures.reshape(len(signatures), self.bands, self.rows).astype(np.uint64)
        rows *= self._mult
        keys = rows.sum(axis=2, dtype=np.uint64)
        keys += self._salt
        # The low 32 bits of the mixed key: a window of 150,000 articles holds 2.4 million
        # band entries, so another band's key matches by chance about once in 1,800 look-ups
        # (and only adds a candidate, which the signature comparison judges).
        return _mix(keys).astype(np.uint32)

    def stored_many(self, signatures: np.ndarray) -> np.ndarray:
        """The form the matrix keeps each row of `signatures` in: each bin's low 16 bits,
        EMPTY as 0xFFFF and a filled bin never so. Two different bins look equal once in
        65,536 comparisons, a Jaccard estimate of 64 bins moves by 1/64 that often; a
        150,000-article window's matrix is 19 MB instead of 38."""
        low = (signatures & _LOW16).astype(np.uint16)
        np.minimum(low, _FULL16, out=low)
        low[signatures == EMPTY] = _EMPTY16
        return low

    def _prepared(self, sig: np.ndarray) -> Prepared:
        last = self._last
        if last is None or last[0] is not sig:
            _, keys, stored = self.prepare(sig[None, :])[0]
            last = self._last = (sig, keys, stored)
        return last

    def _band_keys(self, sig: np.ndarray) -> np.ndarray:
        return self._prepared(sig)[1]

    def _stored(self, sig: np.ndarray) -> np.ndarray:
        return self._prepared(sig)[2]

    def query(
        self, sig: np.ndarray, threshold: float, accept: Callable[[int], bool] | None = None
    ) -> tuple[int, float] | None:
        """The most similar stored key at estimated Jaccard ≥ threshold (the oldest on ties),
        among the keys `accept` accepts (all when None).

        The candidates are compared in one numpy operation: boilerplate-heavy pages can share
        bands with hundreds of others, and comparing them one by one cost milliseconds."""
        found = self.candidates(sig)
        keys = sorted(found if accept is None else filter(accept, found))
        if not keys:
            return None
        blocks = self._blocks
        rows = [self._rows[k] for k in keys]
        stack = np.array([blocks[r >> _BLOCK_SHIFT][r & _BLOCK_MASK] for r in rows])
        stored = self._stored(sig)
        used = (stack != _EMPTY16) | (stored != _EMPTY16)
        same = np.count_nonzero((stack == stored) & used, axis=1)
        scores = same / np.maximum(np.count_nonzero(used, axis=1), 1)
        best = int(np.argmax(scores))
        score = float(scores[best])
        return (keys[best], score) if score >= threshold else None

    def candidates(self, sig: np.ndarray) -> set[int]:
        """The keys that share at least one band with `sig`."""
        bands = self._band_keys(sig)
        found: set[int] = set()
        if len(self._keys):
            lo = self._keys.searchsorted(bands, "left")
            hi = self._keys.searchsorted(bands, "right")
            for b in (hi > lo).nonzero()[0].tolist():
                rows = self._entry_rows[lo[b] : hi[b]]
                live = rows[self._row_gen[rows] == self._entry_gens[lo[b] : hi[b]]]
                found.update(self._row_key[live].tolist())
        fresh = self.fresh
        for band in bands.tolist():
            members = fresh.get(band)
            if members is None:
                continue
            if isinstance(members, int):
                found.add(members)
            else:
                found.update(members)
        return found

    def insert(self, key: int, sig: np.ndarray) -> None:
        if key in self._rows:
            self.remove(key)
        if self._free:
            row = self._free.pop()
        else:
            row = len(self._rows)
            if row == len(self._row_key):
                self._grow()
        self._blocks[row >> _BLOCK_SHIFT][row & _BLOCK_MASK] = self._stored(sig)
        self._row_key[row] = key
        self._rows[key] = row
        bands = self._fresh_keys[key] = self._band_keys(sig)
        fresh = self.fresh
        for band in bands.tolist():
            members = fresh.get(band)
            if members is None:
                fresh[band] = key
            elif isinstance(members, int):
                fresh[band] = (members, key)
            else:
                fresh[band] = (*members, key)
        self._fresh_entries += self.bands
        if self._fresh_entries >= FRESH_ENTRIES:
            self._merge_fresh()

    def _grow(self) -> None:
        """A block of rows more (its pages cost no memory until rows land there)."""
        self._blocks.append(np.empty((BLOCK_ROWS, self.bands * self.rows), dtype=np.uint16))
        self._row_key = np.concatenate([self._row_key, np.zeros(BLOCK_ROWS, dtype=np.int64)])
        self._row_gen = np.concatenate([self._row_gen, np.zeros(BLOCK_ROWS, dtype=np.uint32)])

    def _merge_fresh(self) -> None:
        """Move the fresh entries into the sorted arrays, dropping the dead ones."""
        bands: list[int] = []
        rows: list[int] = []
        for band, members in self.fresh.items():
            for key in (members,) if isinstance(members, int) else members:
                bands.append(band)
                rows.append(self._rows[key])
        new_keys = np.array(bands, dtype=np.uint32)
        new_rows = np.array(rows, dtype=np.int32)
        order = np.argsort(new_keys, kind="stable")
        new_keys, new_rows = new_keys[order], new_rows[order]
        new_gens = self._row_gen[new_rows]
        # The merged arrays are allocated once and filled array by array, so that at most
        # one temporary of the old entries' size is alive besides the old and new arrays: a
        # merge of a 150,000-article window moves 2.4 million entries (38 MB).
        live = self._row_gen[self._entry_rows] == self._entry_gens
        # Where each new entry goes among the live ones (after equal keys: older first):
        # its place among all entries less the dead ones before it (a merge's worth of
        # articles died since the last, a few thousand entries of millions).
        at = np.searchsorted(self._keys, new_keys, "right")
        at -= np.searchsorted(np.flatnonzero(~live), at)
        total = int(np.count_nonzero(live)) + len(new_keys)
        fresh_at = at + np.arange(len(new_keys))
        old_at = np.ones(total, dtype=np.bool_)
        old_at[fresh_at] = False
        for name, new in (
            ("_keys", new_keys),
            ("_entry_rows", new_rows),
            ("_entry_gens", new_gens),
        ):
            old = getattr(self, name)
            out = np.empty(total, dtype=old.dtype)
            out[fresh_at] = new
            out[old_at] = old[live]
            setattr(self, name, out)  # the old array goes at the next turn
        self.fresh = {}
        self._fresh_entries = 0
        self._fresh_keys = {}

    def remove(self, key: int) -> None:
        row = self._rows.pop(key, None)
        if row is None:
            return
        self._row_gen[row] += 1  # its sorted entries are dead from now
        self._free.append(row)
        bands = self._fresh_keys.pop(key, None)
        if bands is None:
            return  # merged into the sorted arrays: dead by its generation alone
        fresh = self.fresh
        for band in bands.tolist():
            members = fresh.get(band)
            if members == key:
                del fresh[band]
            elif isinstance(members, tuple) and key in members:
                rest = tuple(k for k in members if k != key)
                fresh[band] = rest[0] if len(rest) == 1 else rest

    def entries(self) -> int:
        """Live band entries (bands times stored keys, once the dead ones are merged out)."""
        live = self._row_gen[self._entry_rows] == self._entry_gens
        count = sum(1 if isinstance(m, int) else len(m) for m in self.fresh.values())
        return int(np.count_nonzero(live)) + count

    def __len__(self) -> int:
        return len(self._rows)
