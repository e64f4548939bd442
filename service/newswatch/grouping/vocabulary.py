"""Compact state of grouping: one vocabulary of integer term ids, sparse vectors as id and
weight arrays, and the arithmetic on them.

Every term, entity key ("@...") and figure ("#...") an article brings gets an id the first
time it is seen; document frequencies and each term's kind live in numpy arrays indexed by
id. Article vectors and event centroids are `Sparse`: an int32 array of ids and a float64
array of weights, 12 bytes an entry where a dict held about 100 (a slot, a str key shared
with the vocabulary and a float object). Products and sums of sparse vectors go through one
dense scratch array as long as the vocabulary: scatter one side, gather at the other's ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import compress, repeat
from operator import is_

import numpy as np

# Kinds of term (Vocabulary.kind): words, named entities ("@key"), figures ("#24").
WORD, ENTITY, FIGURE = 0, 1, 2
_KIND_OF_PREFIX = {"@": ENTITY, "#": FIGURE}
_EMPTY_IDS = np.zeros(0, dtype=np.int32)
_EMPTY_WEIGHTS = np.zeros(0, dtype=np.float64)


@dataclass(slots=True)
class Sparse:
    """A sparse vector: `ids` (int32, unique) and their `weights`. An article's vector keeps
    its terms heaviest first; a centroid keeps them in id order."""

    ids: np.ndarray
    weights: np.ndarray

    @classmethod
    def empty(cls) -> Sparse:
        return cls(_EMPTY_IDS, _EMPTY_WEIGHTS)

    def __len__(self) -> int:
        return len(self.ids)

    def norm2(self) -> float:
        return float(self.weights @ self.weights)

    def top(self, n: int) -> Sparse:
        """The n heaviest entries, heaviest first (ties in the vector's order)."""
        order = (-self.weights).argsort(kind="stable")[:n]
        return Sparse(self.ids[order], self.weights[order])

    def pruned(self, n: int) -> Sparse:
        """The n heaviest entries, in id order."""
        keep = (-self.weights).argsort(kind="stable")[:n]
        keep.sort()
        return Sparse(self.ids[keep], self.weights[keep])

    def weight_of(self, ids: np.ndarray) -> np.ndarray:
        """The weight of each of `ids` in this centroid (id-ordered), 0.0 where absent."""
        own = self.ids
        if not len(own):
            return np.zeros(len(ids))
        # Array methods, not the np.* functions: those wrap them in a Python call that costs
        # more than the search on these sizes (called several times an article).
        at = own.searchsorted(ids)
        np.minimum(at, len(own) - 1, out=at)
        return np.where(own[at] == ids, self.weights[at], 0.0)


class Vocabulary:
    """Term -> id, and per id its document frequency and kind."""

    def __init__(self, capacity: int = 4096):
        self.ids: dict[str, int] = {}
        self.terms: list[str] = []
        self.df = np.zeros(capacity, dtype=np.int64)
        self.kind = np.zeros(capacity, dtype=np.int8)
        # Zero everywhere between operations (see the module docstring).
        self.scratch = np.zeros(capacity, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.terms)

    def __contains__(self, term: str) -> bool:
        return term in self.ids

    def df_of(self, term: str) -> int:
        """The document frequency of a term (0 for one never seen or forgotten)."""
        i = self.ids.get(term)
        return 0 if i is None else int(self.df[i])

    def lookup(self, keys: Iterable[str]) -> np.ndarray:
        """The id of each key, adding the keys not seen before (intp, for indexing)."""
        keys = list(keys)
        found = list(map(self.ids.get, keys))
        if None in found:
            found = [self._add(k) if i is None else i for k, i in zip(keys, found, strict=True)]
        return np.array(found, dtype=np.intp)

    def peek(self, keys: Iterable[str]) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """The id of each key as `lookup` would give it, without adding any: the keys not
        seen before are numbered after the known ones in the order they first appear. And
        those new keys, each with the place of its first appearance, for `admit`."""
        keys = list(keys)
        found = list(map(self.ids.get, keys))
        new: dict[str, int] = {}
        places: list[tuple[int, str]] = []
        if None in found:
            known = len(self.terms)
            # Only the keys not found are looked at (compress walks the list in C).
            for place in compress(range(len(found)), map(is_, found, repeat(None))):
                key = keys[place]
                i = new.get(key)
                if i is None:
                    i = new[key] = known + len(new)
                    places.append((place, key))
                found[place] = i
        return np.array(found, dtype=np.intp), places

    def admit(self, new: Iterable[str], ids: np.ndarray) -> None:
        """Add the `new` keys (in the order `peek` numbered them) and count one more
        document holding each of `ids`."""
        for key in new:
            self._add(key)
        self.df[ids] += 1

    def _add(self, term: str) -> int:
        i = len(self.terms)
        if i == len(self.df):
            self._grow(2 * i)
        self.ids[term] = i
        self.terms.append(term)
        self.kind[i] = _KIND_OF_PREFIX.get(term[:1], WORD)
        return i

    def _grow(self, capacity: int) -> None:
        for name in ("df", "kind", "scratch"):
            old = getattr(self, name)
            new = np.zeros(capacity, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def compact(self, used: np.ndarray) -> np.ndarray:
        """Forget the terms seen once that nothing in `used` (a mask over ids) refers to, and
        the counts of those seen once that something does; renumber the rest in their old
        order. Returns old id -> new id (-1 for a forgotten term), for the holders of ids."""
        n = len(self.terms)
        keep = (self.df[:n] > 1) | used[:n]
        remap = np.full(n, -1, dtype=np.intp)
        kept = np.flatnonzero(keep)
        remap[kept] = np.arange(len(kept))
        df = np.where(self.df[kept] > 1, self.df[kept], 0)
        kind = self.kind[kept]
        self.terms = [self.terms[i] for i in kept.tolist()]
        self.ids = {t: i for i, t in enumerate(self.terms)}
        capacity = max(4096, 2 * len(kept))
        self.df = np.zeros(capacity, dtype=np.int64)
        self.df[: len(kept)] = df
        self.kind = np.zeros(capacity, dtype=np.int8)
        self.kind[: len(kept)] = kind
        self.scratch = np.zeros(capacity, dtype=np.float64)
        return remap

    # --- arithmetic over the scratch array ------------------------------------------------
    def dot(self, a: Sparse, b: Sparse) -> float:
        """a · b."""
        if len(a) > len(b):
            a, b = b, a
        scratch = self.scratch
        scratch[b.ids] = b.weights
        out = float(scratch[a.ids] @ a.weights)
        scratch[b.ids] = 0.0
        return out

    def dots(self, vec: Sparse, others: list[Sparse]) -> np.ndarray:
        """vec · each of `others`, in one gather over all their entries."""
        if not others:
            return np.zeros(0)
        scratch = self.scratch
        scratch[vec.ids] = vec.weights
        ids = np.concatenate([o.ids for o in others])
        weights = np.concatenate([o.weights for o in others])
        rows = np.arange(len(others)).repeat([len(o) for o in others])
        out = np.bincount(rows, weights=scratch[ids] * weights, minlength=len(others))
        scratch[vec.ids] = 0.0
        return out

    def add(self, a: Sparse, b: Sparse) -> Sparse:
        """a + b, in id order. (Weights are positive: an id whose scratch entry is still 0
        after a's are scattered is one a lacks. np.union1d sorts by hashing here, several
        times the cost of sorting the few new ids in.)"""
        scratch = self.scratch
        scratch[a.ids] = a.weights
        fresh = b.ids[scratch[b.ids] == 0.0]
        scratch[b.ids] += b.weights
        ids = np.concatenate([a.ids, fresh.astype(np.int32)])
        ids.sort(kind="stable")
        weights = scratch[ids]
        scratch[ids] = 0.0
        return Sparse(ids, weights)

    def total(self, vectors: list[Sparse]) -> Sparse:
        """The sum of `vectors`, in id order."""
        if not vectors:
            return Sparse.empty()
        ids = np.concatenate([v.ids for v in vectors])
        unique, where = np.unique(ids, return_inverse=True)
        weights = np.bincount(where, weights=np.concatenate([v.weights for v in vectors]))
        return Sparse(unique.astype(np.int32), weights)

    def of_kind(self, vec: Sparse, kind: int) -> Sparse:
        """The entries of `vec` whose terms are of `kind` (ENTITY: an event's entity
        weights)."""
        mask = self.kind[vec.ids] == kind
        return Sparse(vec.ids[mask], vec.weights[mask])

    def entity_cosine(self, a: Sparse, b: Sparse) -> float:
        """The cosine of the entity entries of a and b; -1.0 when either side has none."""
        ea, eb = self.of_kind(a, ENTITY), self.of_kind(b, ENTITY)
        if not len(ea) or not len(eb):
            return -1.0
        return self.dot(ea, eb) / float(np.sqrt(ea.norm2() * eb.norm2()))
