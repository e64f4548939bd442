"""Online event clustering, independent of the store.

Each article becomes a sparse vector (TF-IDF of title, lead and body with online IDF, plus
normalised entities) and joins the most similar recent event whose centroid is close enough,
or opens a new one. Candidates come from an inverted index over entities and rare terms,
restricted to the time window: the cost per article does not grow with the store.

The state is compact (see vocabulary.py and docs/decisions/0092-compact-grouping-state.md):
terms are integer ids of one vocabulary, document frequencies a numpy array, vectors and
centroids id/weight arrays, and the candidate events of an article are scored in one
vectorised step.

A join is decided on one article, and the first report of a second event of the same kind
(the second injured-reserve placement of one team) can look as close to the first event as
its own reports do. Such a mix shows only once both sides have several reports: at a few
sizes a young event checks whether its members fall in two groups (a normalised cut of their
similarity graph) and, if they clearly do, the later group splits off as an event of its own.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import chain, compress, repeat
from operator import itemgetter
from typing import TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from newswatch.grouping import evidence
from newswatch.grouping.minhash import LSHIndex, MinHasher, Prepared, token_hashes_many
from newswatch.grouping.settings import GroupingSettings
from newswatch.grouping.text import Features, extract
from newswatch.grouping.vocabulary import ENTITY, WORD, Sparse, Vocabulary

# A term in more than this share of documents is too common to find candidates by.
RARE_SHARE = 0.05
# Features of an article posted in the inverted index (its heaviest ones).
POSTED_FEATURES = 24
# Postings keep the most recent events per feature: old ones fall out of the window anyway.
POSTING_DEPTH = 32
# Terms an event's centroid keeps (pruned back to this when it doubles).
CENTROID_TERMS = 256
# Events besides the best one checked for a merge at each article.
MERGE_CHECKS = 2
# Rare terms of an article that look up candidate events.
CANDIDATE_TERMS = 16
# Articles between two sweeps of what fell out of the window.
EXPIRE_EVERY = 1000
# Sweeps between two of posting lists. A stale list costs nothing but memory (candidates
# skip forgotten events), and looking through every list cost 8 ms a sweep.
POSTINGS_SWEEP_EVERY = 10
# Terms kept in the vocabulary before the words seen once are forgotten.
DF_MAX = 500_000
# Before this many documents the IDF is too young to call terms rare.
IDF_WARMUP = 50
# Member counts at which an event checks whether it holds two events. Geometric: a check
# costs O(n^2), and a mix shows early (both events of a kind get their reports at once).
SPLIT_CHECKS = frozenset((6, 9, 13, 19, 28, 40, 58))
# Past the last check an event keeps no member vectors.
SPLIT_MAX_MEMBERS = max(SPLIT_CHECKS)
# Original reports (not copies) each side of a split needs.
SPLIT_MIN_SIDE = 3
# Candidates passed over that an article's explanation keeps, and the share of the
# threshold from which one below it counts as a near miss.
NEAR_MISSES = 3
NEAR_SHARE = 0.5


# A member's vector entry: term id and weight side by side in one array.
_MEMBER_ENTRY = np.dtype([("id", np.int32), ("weight", np.float32)])


class Member:
    """What a young event remembers of each article, to check it for a split: its vector
    (term ids heaviest first, and their weights).

    Members are most of a window's memory (about half its articles belong to an event
    young enough to split), so the vector is packed: ids and weights in one array of
    8-byte entries, the weights in float32 (a split check compares members' cosines against
    a cut of 0.8; seven digits are plenty), one array and no Sparse object per member."""

    __slots__ = ("_entries", "article_id", "copy_of", "opened", "short", "when", "years")

    def __init__(
        self,
        article_id: int,
        vector: Sparse,
        when: float,
        short: bool,  # a headline or a short summary: too sparse to judge a split on
        opened: bool,  # the article opened an event (its id is an event id)
        copy_of: int | None = None,  # a near-duplicate follows its original
        years: frozenset[str] = frozenset(),  # the years it states (Features.years)
    ) -> None:
        self.article_id = article_id
        self.years = years
        self.vector = vector
        self.when = when
        self.short = short
        self.opened = opened
        self.copy_of = copy_of

    @property
    def vector(self) -> Sparse:
        entries = self._entries
        return Sparse(entries["id"], entries["weight"])

    @vector.setter
    def vector(self, vector: Sparse) -> None:
        entries = np.empty(len(vector), dtype=_MEMBER_ENTRY)
        entries["id"] = vector.ids
        entries["weight"] = vector.weights
        self._entries = entries


def _originals(members: list[Member]) -> list[Member]:
    """The members that copy no other (copies follow their originals)."""
    return [m for m in members if m.copy_of is None]


class Arrivals:
    """Articles in the order they were added, with their times: two flat arrays and the
    index of the oldest still held (a deque of (time, id) tuples cost 77 bytes an article,
    these 16)."""

    def __init__(self) -> None:
        self.times = array("d")
        self.keys = array("q")
        self.head = 0

    def __len__(self) -> int:
        return len(self.times) - self.head

    def append(self, when: float, key: int) -> None:
        self.times.append(when)
        self.keys.append(key)

    def pop_older(self, horizon: float) -> list[int]:
        """The keys at the front added with a time before `horizon`, removed (the front
        stops at the first newer one, as a queue's would)."""
        times, start = self.times, self.head
        end = start
        while end < len(times) and times[end] < horizon:
            end += 1
        popped = self.keys[start:end].tolist()
        self.head = end
        if end > len(times) // 2:  # the dead front is most of the arrays: drop it
            del times[:end]
            del self.keys[:end]
            self.head = 0
        return popped


@dataclass(slots=True)
class Event:
    id: int
    first_seen: float
    last_seen: float
    centroid: Sparse = field(default_factory=Sparse.empty)  # in id order
    norm2: float = 0.0
    size: int = 0
    merged_into: int | None = None
    # Members while the event may still split (None once past SPLIT_MAX_MEMBERS).
    members: list[Member] | None = field(default_factory=list)


@dataclass(frozen=True)
class Split:
    """Event `event_id` held two events: `moved` articles now form `new_event_id`."""

    event_id: int
    new_event_id: int
    moved: tuple[int, ...]
    score: float  # the normalised cut between the two groups (lower: more apart)


@dataclass
class Decision:
    """Where an article went and why (the stored explanation)."""

    event_id: int
    opened: bool
    stage: str  # "duplicate" | "similar" | "new"
    score: float = 0.0
    duplicate_of: int | None = None
    shared_entities: list[str] = field(default_factory=list)
    merged: list[int] = field(default_factory=list)
    signature: np.ndarray | None = None  # the article's MinHash signature, to be stored
    split: Split | None = None  # the event this article joined split after it joined
    # The specific names (rare in the window) the article shares with the event it joined.
    evidence: list[str] = field(default_factory=list)
    # Candidate events not joined: (event id, score, why not), closest first.
    near: list[tuple[int, float, str]] = field(default_factory=list)


_BY_VALUE = itemgetter(1)
_K = TypeVar("_K")


def _top(items: Iterable[tuple[_K, float]], n: int) -> list[tuple[_K, float]]:
    """The n (key, value) pairs of largest value, in heapq.nlargest's order: sorted() with a
    C key function is several times faster than nlargest with a lambda on these sizes."""
    return sorted(items, key=_BY_VALUE, reverse=True)[:n]


def _new_posting(event_id: int) -> array[int]:
    return array("q", (event_id,))


def _post_terms(
    postings: dict[int, array[int]],
    event_id: int,
    terms: Iterable[int],
    new_posting: Callable[[int], array[int]],
    depth: int,
) -> None:
    """Append event_id to the posting of each term, unless it is its last entry already;
    a posting keeps its `depth` newest entries."""
    for term in terms:
        posting = postings.get(term)
        if posting is None:
            postings[term] = new_posting(event_id)
        elif posting[-1] != event_id:
            posting.append(event_id)
            if len(posting) > depth:
                del posting[0]


def _top_votes(postings: dict[int, array[int]], keys: list[int], n: int) -> list[int]:
    """The n ids found most often in the postings of `keys`, most first (ties: the first
    found first), counted by Counter."""
    votes = Counter(chain.from_iterable(map(postings.get, keys, repeat(()))))
    return [k for k, _ in _top(votes.items(), n)]


def _tfidf(
    terms: dict[str, float],
    entities: dict[str, str],
    vocab: Vocabulary,
    docs: int,
    entity_weight: float,
    size: int,
    rare_count: int,
    rare_limit: float,
) -> tuple[Sparse, list[int]]:
    """The article's TF-IDF vector (heaviest first) and rare term ids (see
    Clusterer._learn_vectors): `_tfidf_many` of one article, learnt at once."""
    [(vec, rare, admit)] = _tfidf_many(
        [(terms, entities)], vocab, [docs], entity_weight, size, rare_count, [rare_limit]
    )
    admit()
    return vec, rare


def _tfidf_many(
    articles: list[tuple[dict[str, float], dict[str, str]]],
    vocab: Vocabulary,
    docs: list[int],
    entity_weight: float,
    size: int,
    rare_count: int,
    rare_limits: list[float],
) -> list[tuple[Sparse, list[int], Callable[[], None]]]:
    """Each article's TF-IDF vector (heaviest first), rare term ids, and the step that
    learns it (adds its new terms to the vocabulary and counts it in their document
    frequencies), for `docs` documents seen (each article's own count), in one numpy pass
    over all their terms. An article's document
    frequencies count it and the articles before it, as _tfidf on each in turn would, and
    term ids are those the vocabulary gives when the steps run in order (a term is once in
    an article: terms and entity keys are dict keys, and entity keys start with "@", terms
    never do). The vocabulary changes only in those steps, so that whatever looks at it
    between two articles sees the state of one article at a time."""
    sizes = [len(t) + len(e) for t, e in articles]
    ids, new = vocab.peek(chain.from_iterable(chain(t, e) for t, e in articles))
    k, total = len(articles), len(ids)
    article = np.repeat(np.arange(k), sizes)
    starts = np.cumsum(sizes) - sizes
    counts = np.zeros(total, dtype=np.float64)
    known = ids < len(vocab)
    counts[known] = vocab.df[ids[known]]
    # The articles before this one in the batch that hold the term, and this one.
    order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    first = np.ones(total, dtype=np.bool_)
    first[1:] = ordered[1:] != ordered[:-1]
    group = np.maximum.accumulate(np.where(first, np.arange(total), 0))
    seen = np.empty(total, dtype=np.int64)
    seen[order] = np.arange(total) - group + 1
    counts += seen
    idf = np.array([math.log(d + 1) + 1.0 for d in docs])
    weight = idf[article] - np.log1p(counts)
    n_terms = np.array([len(t) for t, _ in articles], dtype=np.intp)
    is_term = np.arange(total) - starts[article] < n_terms[article]
    tf = np.fromiter(chain.from_iterable(t.values() for t, _ in articles), np.float64)
    factor = np.full(total, entity_weight)
    factor[is_term] = np.where(tf >= 1, 1.0 + np.log(np.maximum(tf, 1.0)), tf)
    weight *= factor
    # Heaviest first within each article (ties in the text's order), its first `size`.
    order = np.lexsort((-weight, article))
    keep = np.arange(total) - starts[article] < size
    top, owner = order[keep], article[keep]
    chosen = weight[top]
    norms = np.sqrt(np.bincount(owner, weights=chosen * chosen, minlength=k))
    norms[norms == 0] = 1.0
    chosen /= norms[owner]
    kept = ids[top].astype(np.int32)
    rare = np.flatnonzero(counts[top] <= np.array(rare_limits)[owner])
    rare_owner = owner[rare]
    rare = rare[np.arange(len(rare)) - np.searchsorted(rare_owner, rare_owner) < rare_count]
    rare_ids = kept[rare].tolist()
    ends = np.cumsum(np.bincount(owner, minlength=k)).tolist()
    rare_ends = np.cumsum(np.bincount(owner[rare], minlength=k)).tolist()
    # Each new term is added by the article it first appears in.
    new_by_article: list[list[str]] = [[] for _ in articles]
    for place, key in new:
        new_by_article[int(article[place])].append(key)
    out: list[tuple[Sparse, list[int], Callable[[], None]]] = []
    begin = rare_begin = 0
    for i, (end, rare_end) in enumerate(zip(ends, rare_ends, strict=True)):
        vec = Sparse(kept[begin:end], chosen[begin:end])
        step = partial(vocab.admit, new_by_article[i], ids[starts[i] : starts[i] + sizes[i]])
        out.append((vec, rare_ids[rare_begin:rare_end], step))
        begin, rare_begin = end, rare_end
    return out


def _affinity(members: list[Member], kind: np.ndarray) -> np.ndarray:
    """Pairwise similarity of the members' unit vectors: the cosine of the whole vectors plus
    the cosine of their entity and figure features alone (names tell two events of a kind
    apart more than their shared vocabulary), zero on the diagonal. `kind`: the
    vocabulary's kind of each term id.

    Only the terms two members share add to a product, so the matrices keep only those
    columns: one sort of the members' term ids finds them (a member holds a term once)."""
    n = len(members)
    keys = np.concatenate([m.vector.ids for m in members])
    weights = np.concatenate([m.vector.weights for m in members], dtype=np.float64)
    named = kind[keys] != WORD
    rows = np.repeat(np.arange(n), [len(m.vector) for m in members])
    # Members keep float32 weights: unit length again in float64, so the product is the
    # cosine to the last digit.
    weights /= np.sqrt(np.bincount(rows, weights=weights * weights, minlength=n))[rows]
    # Entity vectors are normalised on all their entries, shared or not.
    named_weights = np.where(named, weights, 0.0)
    norms = np.sqrt(np.bincount(rows, weights=named_weights * named_weights, minlength=n))
    named_weights /= np.where(norms > 0, norms, 1.0)[rows]
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    same = ordered[1:] == ordered[:-1]  # an entry and the next hold one term
    shared = np.zeros(len(keys), dtype=np.bool_)
    shared[1:] = same
    shared[:-1] |= same
    entries = order[shared]
    # Each shared term a column: a new one wherever the sorted term changes.
    starts = np.ones(len(keys), dtype=np.bool_)
    starts[1:] = ~same
    column = np.cumsum(starts[shared]) - 1
    x = np.zeros((n, int(column[-1]) + 1 if len(column) else 0))
    x[rows[entries], column] = weights[entries]
    w = x @ x.T
    x[rows[entries], column] = named_weights[entries]
    w += x @ x.T
    np.fill_diagonal(w, 0.0)
    return w


def bipartition(w: np.ndarray, min_side: int) -> tuple[float, np.ndarray | None]:
    """The best split of a similarity graph in two, as (normalised cut, mask of one side);
    (inf, None) when no split leaves min_side nodes each side.

    Spectral: nodes ordered by the Fiedler vector of the normalised Laplacian, then the
    threshold along that order with the lowest normalised cut (Shi & Malik): cut/vol(A) +
    cut/vol(B), which is 2 for a random halving of a uniform graph and near 0 for two
    groups with nothing in common."""
    n = len(w)
    if n < 2 * min_side:
        return math.inf, None
    degree = w.sum(axis=1) + 1e-12
    scale = 1.0 / np.sqrt(degree)
    laplacian = np.eye(n) - scale[:, None] * w * scale[None, :]
    _, vectors = np.linalg.eigh(laplacian)
    order = np.argsort(scale * vectors[:, 1], kind="stable")
    ordered = w[np.ix_(order, order)]
    # For the first k nodes in order: their volume, and the weight inside them.
    volume = np.cumsum(degree[order])
    inside = np.diagonal(np.cumsum(np.cumsum(ordered, axis=0), axis=1))
    cut = volume - inside
    ncut = cut / volume + cut / np.maximum(volume[-1] - volume, 1e-12)
    ks = np.arange(min_side, n - min_side + 1)
    best = int(ks[np.argmin(ncut[ks - 1])])
    mask = np.zeros(n, dtype=np.bool_)
    mask[order[:best]] = True
    return float(ncut[best - 1]), mask


_BLAS_LIMITED = False


def _single_threaded_blas() -> None:
    """Split checks multiply and decompose small matrices (at most 58 x 58). OpenBLAS spreads
    those over a thread pool that only waits when the other cores are busy: measured on a
    loaded 2-core machine, a 58-member check took 7 ms instead of 0.3 ms. One thread for the
    process's BLAS (set once; nothing else here uses big matrices)."""
    global _BLAS_LIMITED
    if not _BLAS_LIMITED:
        threadpool_limits(1, user_api="blas")
        _BLAS_LIMITED = True


class Clusterer:
    """Assigns articles to events one at a time; `when` is a POSIX timestamp."""

    def __init__(self, settings: GroupingSettings | None = None):
        _single_threaded_blas()
        self.s = settings or GroupingSettings()
        self.window = self.s.window_hours * 3600.0
        self.hasher = MinHasher()
        self.lsh = LSHIndex()
        self.vocab = Vocabulary()
        self.docs = 0
        self.events: dict[int, Event] = {}
        # Term id -> the events most recently posted under it, newest last: int64 arrays,
        # whose ids lie side by side (counting votes read a cold int object per entry of a
        # list or deque).
        self.postings: dict[int, array[int]] = {}
        self.article_event: dict[int, int] = {}
        self.lsh_times = Arrivals()
        self.latest = 0.0  # the latest article time seen (the stream's "now")
        self.added = 0
        self.sweeps = 0  # calls of expire()
        self._top_cache: dict[int, tuple[int, list[str]]] = {}
        # Surface forms of each event's entities, by term id ("DPRK" for "@north korea").
        self.entity_names: dict[int, dict[int, str]] = {}
        # Events split apart, never merged again: (smaller id, larger id).
        self.apart: set[tuple[int, int]] = set()
        # Which capitalised headline words are names (learnt from the stream's titles).
        self.names = evidence.NameFinder()

    # --- features -------------------------------------------------------------------
    def features(self, title: str | None, body: str | None) -> Features:
        s = self.s
        return extract(
            title,
            body,
            lead_words=s.lead_words,
            body_words=s.body_words,
            title_weight=s.title_weight,
            body_weight=s.body_weight,
            number_weight=s.number_weight,
        )

    def _learn_vector(self, feats: Features) -> tuple[Sparse, list[int]]:
        """_learn_vectors of one article, learnt at once."""
        [(vec, rare, learn)] = self._learn_vectors([feats])
        learn()
        return vec, rare

    def _learn_vectors(
        self, feats: list[Features]
    ) -> list[tuple[Sparse, list[int], Callable[[], None]]]:
        """Each article's unit-length TF-IDF vector, heaviest terms first, its rare terms
        (the ones that look up candidates), and the step that counts it in the document
        frequencies (to run in order, each before the article is decided: each article's
        vector counts itself and the ones before it).

        idf = log((docs + 1) / (df + 1)) + 1, tf sub-linear (1 + log tf; a term seen only
        with a weight below 1, a body word, keeps it), entities are extra features weighted
        entity_weight. Only the heaviest vector_terms are kept: they carry the similarity,
        the long tail only costs time (ties keep the order of the text). A term in more than
        RARE_SHARE of documents is too common to find candidates by."""
        docs = list(range(self.docs + 1, self.docs + len(feats) + 1))
        self.docs += len(feats)
        limits = [max(2.0, RARE_SHARE * d) if d >= IDF_WARMUP else math.inf for d in docs]
        return _tfidf_many(
            [(f.terms, f.entities) for f in feats],
            self.vocab,
            docs,
            self.s.entity_weight,
            self.s.vector_terms,
            CANDIDATE_TERMS,
            limits,
        )

    def entity_weights(self, event: Event) -> Sparse:
        """The entity entries of the event's centroid (term ids and weights)."""
        return self.vocab.of_kind(event.centroid, ENTITY)

    # --- candidates -----------------------------------------------------------------
    def resolve(self, event_id: int) -> int:
        event = self.events.get(event_id)
        while event is not None and event.merged_into is not None:
            event_id = event.merged_into
            event = self.events.get(event_id)
        return event_id

    def _candidates(self, rare: list[int], when: float) -> list[Event]:
        """Recent events that share the most of the article's rare terms (votes counted
        over the posting lists)."""
        out: list[Event] = []
        seen: set[int] = set()
        for event_id in _top_votes(self.postings, rare, self.s.candidates * 2):
            event = self.events.get(self.resolve(event_id))
            if event is None or event.id in seen or not self._within(event, when):
                continue
            seen.add(event.id)
            out.append(event)
            if len(out) >= self.s.candidates:
                break
        return out

    def _within(self, event: Event, when: float) -> bool:
        """Whether an article at `when` may join `event`: its active span (first to last
        report) is at most the window away, before as after (an archive article republished
        today must not join today's story, nor a copy of it the archive's event)."""
        return event.first_seen - self.window <= when <= event.last_seen + self.window

    def _copy_event(self, signature: np.ndarray, when: float) -> tuple[Event, int, float] | None:
        """The event of the nearest earlier copy (MinHash) whose event is within the window,
        with that copy's id and estimated Jaccard."""
        threshold = self.s.duplicate_jaccard
        hit = self.lsh.query(signature, threshold)
        if hit is None:
            return None
        event = self._event_of(hit[0])
        if event is not None and self._within(event, when):
            return event, *hit
        # The nearest copy's event is out of the window (an old story again): the nearest
        # copy inside it, if any. Rare, so the common case pays for no filter.
        hit = self.lsh.query(signature, threshold, accept=lambda key: self._joinable(key, when))
        if hit is None:
            return None
        event = self._event_of(hit[0])
        assert event is not None
        return event, *hit

    def _event_of(self, article_id: int) -> Event | None:
        event_id = self.article_event.get(article_id)
        return None if event_id is None else self.events.get(self.resolve(event_id))

    def _joinable(self, article_id: int, when: float) -> bool:
        event = self._event_of(article_id)
        return event is not None and self._within(event, when)

    def _scores(self, vec: Sparse, events: list[Event]) -> list[float]:
        """The cosine of the article's vector with each event's centroid, in one step."""
        dots = self.vocab.dots(vec, [e.centroid for e in events]).tolist()
        # In Python: three numpy calls on six numbers cost more than the arithmetic.
        return [
            dot / math.sqrt(e.norm2) if e.norm2 > 0 else 0.0
            for dot, e in zip(dots, events, strict=True)
        ]

    def _cosine(self, a: Event, b: Event) -> float:
        """Cosine of two events' centroids (their squared norms are kept up to date)."""
        if not a.norm2 or not b.norm2:
            return 0.0
        return self.vocab.dot(a.centroid, b.centroid) / math.sqrt(a.norm2 * b.norm2)

    # --- updates --------------------------------------------------------------------
    def _post(self, event_id: int, terms: Iterable[int]) -> None:
        """Index the event under `terms` (its newest article's heaviest ones)."""
        _post_terms(self.postings, event_id, terms, _new_posting, POSTING_DEPTH)

    def _join(self, event: Event, vec: Sparse, when: float, cross: float | None = None) -> None:
        """Add the article's vector to the event; `cross` is vec · centroid when the caller
        has it already (scoring computed it)."""
        if cross is None:
            cross = self.vocab.dot(vec, event.centroid)
        event.centroid = self.vocab.add(event.centroid, vec)
        event.norm2 += 2 * cross + 1.0
        event.size += 1
        self._prune(event)
        event.last_seen = max(event.last_seen, when)
        event.first_seen = min(event.first_seen, when)
        self._post(event.id, vec.ids[:POSTED_FEATURES].tolist())  # vectors are heaviest first

    def _prune(self, event: Event) -> None:
        """A big event's light terms barely move its scores but make every product slower:
        past twice CENTROID_TERMS it keeps its heaviest (and the surface forms of the
        entities among them)."""
        if len(event.centroid) <= 2 * CENTROID_TERMS:
            return
        event.centroid = c = event.centroid.pruned(CENTROID_TERMS)
        event.norm2 = c.norm2()
        names = self.entity_names.get(event.id)
        if names:
            self.entity_names[event.id] = self._names_in(names, c)

    @staticmethod
    def _names_in(names: dict[int, str], centroid: Sparse) -> dict[int, str]:
        """The entries of `names` whose term is in the centroid."""
        ids = np.fromiter(names, dtype=np.intp, count=len(names))
        inside = centroid.weight_of(ids) != 0.0
        return {k: v for (k, v), keep in zip(names.items(), inside.tolist(), strict=True) if keep}

    def _merge(self, keep: Event, gone: Event) -> None:
        keep.norm2 += 2 * self.vocab.dot(gone.centroid, keep.centroid) + gone.norm2
        keep.centroid = self.vocab.add(keep.centroid, gone.centroid)
        keep.size += gone.size
        keep.first_seen = min(keep.first_seen, gone.first_seen)
        keep.last_seen = max(keep.last_seen, gone.last_seen)
        gone.merged_into = keep.id
        gone.centroid = Sparse.empty()
        if keep.members is not None and gone.members is not None:
            keep.members.extend(gone.members)
            if len(keep.members) > SPLIT_MAX_MEMBERS:
                keep.members = None
        else:
            keep.members = None
        gone.members = None
        names = self.entity_names.setdefault(keep.id, {})
        for key, name in self.entity_names.pop(gone.id, {}).items():
            names.setdefault(key, name)
        self._prune(keep)
        self._post(keep.id, keep.centroid.top(POSTED_FEATURES).ids.tolist())

    def expire(self, now: float) -> None:
        """Forget articles and events older than the window, so memory stays flat however
        long the stream: their signatures, assignments, centroids and entity names."""
        horizon = now - self.window
        for key in self.lsh_times.pop_older(horizon):
            self.lsh.remove(key)
            self.article_event.pop(key, None)
        old = [e.id for e in self.events.values() if e.last_seen < horizon]
        for event_id in old:
            del self.events[event_id]
            self.entity_names.pop(event_id, None)
            self._top_cache.pop(event_id, None)
        if old:
            self.apart = {p for p in self.apart if p[0] in self.events or p[1] in self.events}
        self.sweeps += 1
        if self.sweeps % POSTINGS_SWEEP_EVERY == 0:
            self._forget_stale_postings()
        if len(self.vocab) > DF_MAX:
            self._compact_vocabulary()

    def _forget_stale_postings(self) -> None:
        """Posting lists that point only at forgotten events go. (A list's newest entry is
        almost always live, or the list is stale: look further only when it is not.)"""
        events = self.events
        stale = [
            t
            for t, posting in self.postings.items()
            if posting[-1] not in events and not any(e in events for e in posting)
        ]
        for term in stale:
            del self.postings[term]

    def _compact_vocabulary(self) -> None:
        """Words seen once are most of a growing vocabulary (names, typos); forgetting them
        moves their IDF by log(2) and keeps memory flat over months. The terms the window
        still holds keep their ids' place (renumbered in order, so id order stays)."""
        self._forget_stale_postings()
        used = np.zeros(len(self.vocab), dtype=np.bool_)
        for event in self.events.values():
            used[event.centroid.ids] = True
            for m in event.members or ():
                used[m.vector.ids] = True
        used[list(self.postings)] = True
        for names in self.entity_names.values():
            used[list(names)] = True
        remap = self.vocab.compact(used)

        def renumbered(v: Sparse) -> Sparse:
            return Sparse(remap[v.ids].astype(np.int32), v.weights)

        for event in self.events.values():
            event.centroid = renumbered(event.centroid)
            for m in event.members or ():
                m.vector = renumbered(m.vector)
        self.postings = {int(remap[t]): p for t, p in self.postings.items()}
        self.entity_names = {
            e: {int(remap[k]): v for k, v in names.items()}
            for e, names in self.entity_names.items()
        }

    # --- the entry point ------------------------------------------------------------
    def add(self, article_id: int, title: str | None, body: str | None, when: float) -> Decision:
        """Assign one article; the event id of a new event is the article's id."""
        return self.add_many([(article_id, title, body, when)])[0]

    def add_many(
        self, articles: Sequence[tuple[int, str | None, str | None, float]]
    ) -> list[Decision]:
        """Assign articles (id, title, body, time) in order: the decisions of add() called
        on each in turn. What depends on no state (text features, near-duplicate
        signatures and their band keys) is computed for all of them first, the hashing in
        one numpy pass: a batch pays numpy's per-call overhead once instead of per article."""
        feats = [self.features(title, body) for _, title, body, _ in articles]
        signed = self._sign(feats, self.s.duplicate_min_tokens)
        out: list[Decision] = []
        while len(out) < len(articles):
            # Vectors for the articles up to the next expiry, the one step that can renumber
            # term ids (the vocabulary's compaction) and that reads no document frequency.
            first = len(out)
            last = min(len(articles), first + EXPIRE_EVERY - self.added % EXPIRE_EVERY)
            vectors = self._learn_vectors(feats[first:last])
            for i, (vec, rare, learn) in enumerate(vectors, start=first):
                article_id, _, _, when = articles[i]
                learn()
                out.append(self._add(article_id, feats[i], signed[i], vec, rare, when))
        return out

    def _add(
        self,
        article_id: int,
        feats: Features,
        prepared: Prepared | None,
        vec: Sparse,
        rare: list[int],
        when: float,
    ) -> Decision:
        signature = None
        if prepared is not None:
            self.lsh.prime(prepared)
            signature = prepared[0]
        decision = self._decide(article_id, feats, vec, rare, when, signature)
        decision.signature = signature
        short = feats.words < self.s.short_text_words
        member = Member(
            article_id, vec, when, short, decision.opened, decision.duplicate_of, feats.years
        )
        self._remember(member, decision.event_id, signature, feats)
        # The event is gone when the expiry that _remember runs now and then found it older
        # than the window: an archive backfilled newest first. Nothing to split then.
        event = self.events.get(decision.event_id)
        if self.s.split_ncut > 0 and event is not None:
            decision.split = self._check_split(event)
        return decision

    def _sign(self, feats: list[Features], min_tokens: int) -> list[Prepared | None]:
        """Counts each text's words (`Features.words`); the MinHash signature of each text's
        beginning with its band keys (`LSHIndex.prepare`), None for texts of fewer than
        `min_tokens` words."""
        hashes, counts = token_hashes_many([f.shingle_text for f in feats])
        prepared = self.lsh.prepare(self.hasher.signatures(hashes, counts))
        words = counts.tolist()
        for f, n in zip(feats, words, strict=True):
            f.words = n
        least = max(min_tokens, 3)
        return [p if n >= least else None for p, n in zip(prepared, words, strict=True)]

    def restore(
        self,
        article_id: int,
        event_id: int,
        title: str | None,
        body: str | None,
        when: float,
        signature: np.ndarray | None = None,
        *,
        opened: bool = False,
        duplicate_of: int | None = None,
    ) -> None:
        """Replay a stored assignment (at start): learn the article and put it in `event_id`
        without deciding anything, so a restarted process continues the same events. The
        near-duplicate signature is computed from the text unless given. `opened`: the
        article opened an event; `duplicate_of`: the article it copies."""
        feats = self.features(title, body)
        if signature is None:
            prepared = self._sign([feats], self.s.duplicate_min_tokens)[0]
            signature = None if prepared is None else prepared[0]
        else:  # the stored signature is the one: the words counted only
            _hashes, counts = token_hashes_many([feats.shingle_text])
            feats.words = int(counts[0])
        vec, _ = self._learn_vector(feats)
        self.names.observe(feats.title)
        event = self.events.get(event_id)
        if event is None:
            event = self.events[event_id] = Event(event_id, when, when)
        self._join(event, vec, when)
        short = feats.words < self.s.short_text_words
        member = Member(article_id, vec, when, short, opened, duplicate_of, feats.years)
        self._remember(member, event_id, signature, feats)

    # --- splits -----------------------------------------------------------------------
    def _check_split(self, event: Event) -> Split | None:
        """At the sizes of SPLIT_CHECKS, split the event if its reports fall in two groups
        that are two events (see _two_events). The group holding the event's opening article
        keeps the id; the other becomes an event whose id is its earliest article that opened
        no event (so ids stay unique)."""
        members = event.members
        if members is None or len(members) not in SPLIT_CHECKS:
            return None
        found = self._two_events(event, members)
        if found is None:
            return None
        kept, moved, score = found
        new_id = min((m.article_id for m in moved if not m.opened), default=None)
        if new_id is None or new_id in self.events:
            return None
        self._rebuild(event, kept, event.size - len(moved))
        new = self.events[new_id] = Event(new_id, moved[0].when, moved[0].when)
        self._rebuild(new, moved, len(moved))
        for m in moved:
            if m.article_id in self.article_event:
                self.article_event[m.article_id] = new_id
            self._post(new_id, m.vector.ids[:POSTED_FEATURES].tolist())
        names = self.entity_names.get(event.id, {})
        self.entity_names[new_id] = self._names_in(names, new.centroid) if names else {}
        self._top_cache.pop(event.id, None)
        self.keep_apart(event.id, new_id)
        return Split(event.id, new_id, tuple(m.article_id for m in moved), round(score, 4))

    def _two_events(
        self, event: Event, members: list[Member]
    ) -> tuple[list[Member], list[Member], float] | None:
        """(kept, moved, normalised cut) when the original reports (copies follow their
        originals) fall in two groups with a cut below split_ncut whose entities disagree."""
        originals = _originals(members)
        if sum(m.short for m in originals) * 2 > len(originals):
            return None  # headlines: too few words to tell two events of a kind apart
        w = _affinity(originals, self.vocab.kind)
        factor = evidence.year_agreement(self._years(originals))
        if factor is not None:  # reports of different years: half as similar (0189)
            w *= factor
        score, side = bipartition(w, SPLIT_MIN_SIDE)
        if side is None or score >= self.s.split_ncut:
            return None
        in_side = {m.article_id: s for m, s in zip(originals, side.tolist(), strict=True)}
        for m in members:  # copies go where their original went (else they stay)
            if m.copy_of is not None:
                in_side[m.article_id] = in_side.get(m.copy_of, in_side.get(event.id, True))
        stays = in_side[event.id] if event.id in in_side else in_side[min(in_side)]
        kept = [m for m in members if in_side[m.article_id] == stays]
        moved = [m for m in members if in_side[m.article_id] != stays]
        # Two events of a kind name different people and places. Two groups that name the
        # same ones are one event told two ways (two languages, two angles): not split.
        kept_names, moved_names = self._names(kept), self._names(moved)
        if len(kept_names) and len(moved_names):
            norms = math.sqrt(kept_names.norm2() * moved_names.norm2()) or 1.0
            agreement = self.vocab.dot(kept_names, moved_names) / norms
            # Years counted over originals, as the similarity above: a wire story and its
            # syndicated copy are one report, not the DATED_REPORTS a dated group needs.
            if agreement >= self.s.merge_entity_threshold and not evidence.dated_apart(
                self._years(_originals(kept)), self._years(_originals(moved))
            ):
                return None
        return kept, moved, score

    @staticmethod
    def _years(members: list[Member]) -> list[frozenset[str]]:
        """The years ("#2013") each member states in its title and lead, read from the raw
        figures (a count written "2,000" is no year; decision 0189)."""
        return [m.years for m in members]

    def _names(self, members: list[Member]) -> Sparse:
        """The summed weights of the members' entities."""
        return self.vocab.total([self.vocab.of_kind(m.vector, ENTITY) for m in members])

    def _rebuild(self, event: Event, members: list[Member], size: int) -> None:
        """The event's centroid and time span from `members` alone."""
        c = self.vocab.total([m.vector for m in members])
        if len(c) > 2 * CENTROID_TERMS:
            c = c.pruned(CENTROID_TERMS)
        event.centroid = c
        event.norm2 = c.norm2()
        event.members = members
        event.size = size
        event.first_seen = min(m.when for m in members)
        event.last_seen = max(m.when for m in members)

    def keep_apart(self, a: int, b: int) -> None:
        """Events `a` and `b` were split apart: never merge them again (restored at start)."""
        self.apart.add((min(a, b), max(a, b)))

    def _remember(
        self,
        member: Member,
        event_id: int,
        signature: np.ndarray | None,
        feats: Features,
    ) -> None:
        article_id, when = member.article_id, member.when
        event = self.events[event_id]
        if event.members is not None:
            event.members.append(member)
            if len(event.members) > SPLIT_MAX_MEMBERS:
                event.members = None  # past its last check: the vectors only cost memory
        self.article_event[article_id] = event_id
        self.lsh_times.append(when, article_id)
        self.latest = max(self.latest, when)
        self.added += 1
        if self.added % EXPIRE_EVERY == 0:
            self.expire(self.latest)
        names = self.entity_names.setdefault(event_id, {})
        ids = map(self.vocab.ids.get, feats.entities)
        for key, name in zip(ids, feats.entities.values(), strict=True):
            if key is not None and key not in names:
                # One str for a name however many events write it (each article's words
                # are strings of their own).
                names[key] = sys.intern(name)
        if signature is not None:
            self.lsh.insert(article_id, signature)

    def top_entities(self, event_id: int, n: int = 8) -> list[str]:
        """The event's heaviest named entities, as first written in its articles."""
        event = self.events.get(self.resolve(event_id))
        if event is None:
            return []
        cached = self._top_cache.get(event.id)
        # A big event's leading entities change slowly: recompute when it grew by a quarter.
        if cached is not None and cached[0] * 1.25 >= event.size and len(cached[1]) >= n:
            return cached[1][:n]
        names = self.entity_names.get(event.id, {})
        ids = np.fromiter(names, dtype=np.intp, count=len(names))
        weights = event.centroid.weight_of(ids)
        order = (-weights).argsort(kind="stable")[:n]
        surface = list(names.values())
        top = [surface[i] for i in order.tolist() if weights[i] > 0]
        self._top_cache[event.id] = (event.size, top)
        return top

    def _decide(
        self,
        article_id: int,
        feats: Features,
        vec: Sparse,
        rare: list[int],
        when: float,
        signature: np.ndarray | None,
    ) -> Decision:
        if signature is not None:
            found = self._copy_event(signature, when)
            if found is not None:
                event, original, score = found
                self._join(event, vec, when)
                self.names.observe(feats.title)
                return Decision(event.id, False, "duplicate", score, duplicate_of=original)
        candidates = self._candidates(rare, when)
        scored = sorted(
            zip(self._scores(vec, candidates), candidates, strict=True),
            key=lambda se: (-se[0], se[1].id),
        )
        short = feats.words < self.s.short_text_words
        threshold = self.s.short_threshold if short else self.s.threshold
        chosen, near, vetoed = self._choose(feats, vec, scored, threshold)
        self.names.observe(feats.title)
        if chosen is None:
            event = Event(article_id, when, when)
            self.events[article_id] = event
            self._join(event, vec, when)
            best = scored[0][0] if scored else 0.0
            return Decision(article_id, True, "new", best, near=near)
        score, event, shared_specific = chosen
        # What the explanation names: the shared rare names and figures, not the capitalised
        # common words of a title-case headline ("Apps", "Offers"), which still count as
        # agreement against a veto.
        proof = [w for w in shared_specific if not self.names.is_common(w)]
        shared = self._shared_entities(feats, event)
        self._join(event, vec, when, cross=score * math.sqrt(event.norm2))
        merged = []
        # A candidate vetoed for this article is not merged on its account either.
        others = [(s, e) for s, e in scored if e is not event and e.id not in vetoed]
        for other_score, other in others[:MERGE_CHECKS]:
            if other_score < threshold:
                break
            if self._mergeable(event, other, short):
                keep, gone = (event, other) if event.size >= other.size else (other, event)
                self._merge(keep, gone)
                merged.append(gone.id)
                event = keep
        return Decision(
            event.id,
            False,
            "similar",
            score,
            shared_entities=shared,
            merged=merged,
            evidence=proof,
            near=near,
        )

    def _choose(
        self, feats: Features, vec: Sparse, scored: list[tuple[float, Event]], threshold: float
    ) -> tuple[tuple[float, Event, list[str]] | None, list[tuple[int, float, str]], set[int]]:
        """The closest candidate above the threshold whose specific names do not conflict
        with the article's (score, event, the shared specific names), the candidates passed
        over with the reason (at most NEAR_MISSES, from half the threshold up), and every
        candidate vetoed (not capped: none of them may be merged on this article's account)."""
        near: list[tuple[int, float, str]] = []
        vetoed: set[int] = set()
        chosen = None
        named = (vec.ids[self.vocab.kind[vec.ids] != WORD]).astype(np.intp)
        for score, event in scored:
            if score < threshold:
                if score >= NEAR_SHARE * threshold and len(near) < NEAR_MISSES:
                    near.append((event.id, round(score, 4), f"score below {threshold:g}"))
                continue
            if chosen is not None:
                continue
            veto, proof = self._conflict(feats, named, event)
            if veto is None:
                chosen = (score, event, proof)
                continue
            vetoed.add(event.id)
            if len(near) < NEAR_MISSES:
                near.append((event.id, round(score, 4), veto.reason()))
        return chosen, near, vetoed

    def _live(self, event_id: int) -> int | None:
        """The id `event_id` resolves to if that event is live, else None."""
        resolved = self.resolve(event_id)
        return resolved if resolved in self.events else None

    def _event_subjects(self, event: Event, exclude: set[int]) -> dict[int, str]:
        """The event's specific subjects: among its heaviest entities, the names that can be
        subjects (NameFinder.is_subject) rare in the window, weighing at least SUBJECT_SHARE
        of the heaviest."""
        named = self.entity_names.get(event.id, {})
        entities = self.vocab.of_kind(event.centroid, ENTITY).top(evidence.SUBJECT_CANDIDATES)
        kept: list[tuple[int, float]] = []
        for term, weight in zip(entities.ids.tolist(), entities.weights.tolist(), strict=True):
            surface = named.get(term)
            if surface is None or not self.names.is_subject(surface):
                continue
            if evidence.is_specific(self.postings, self._live, term, exclude):
                kept.append((term, weight))
        if not kept:
            return {}
        top = kept[0][1]
        return {t: named[t] for t, w in kept if w >= evidence.SUBJECT_SHARE * top}

    def _conflict(
        self, feats: Features, named: np.ndarray, event: Event
    ) -> tuple[evidence.Veto | None, list[str]]:
        """(a veto, []) when the headline names specific subjects and the event others, with
        no name in common; else (None, the specific names and figures they share).
        `named`: the entity and figure ids of the article's vector, heaviest first."""
        own = {event.id}
        hits = named[event.centroid.weight_of(named) > 0].tolist()
        shared: list[str] = []
        for term in hits[: evidence.SHARED_TERMS_CHECKED]:
            if evidence.is_specific(self.postings, self._live, term, own):
                shared.append(self._surface(feats, term))
                if len(shared) == evidence.EVIDENCE_NAMED:
                    break
        if shared or not self.s.subject_veto or not feats.title:
            return None, sorted(shared)
        kind = self.vocab.kind
        if any(
            kind[t] == ENTITY and not self.names.is_common(self._surface(feats, t)) for t in hits
        ):
            return None, []  # a name in common, however frequent: "Gox" in three events
        ours = [
            surface
            for key, surface in self.names.names(feats.title).items()
            if (term := self.vocab.ids.get(key)) is not None
            and evidence.is_specific(self.postings, self._live, term, own)
        ]
        if not ours:
            return None, []
        theirs = self._event_subjects(event, own)
        if not theirs:
            return None, []
        return evidence.veto_of(ours, theirs.values()), []

    def _surface(self, feats: Features, term: int) -> str:
        """How the article wrote an entity or figure term ("Gox" for "@gks", "24" for
        "#24")."""
        key = self.vocab.terms[term]
        return feats.entities.get(key, key[1:])

    def _shared_entities(self, feats: Features, event: Event) -> list[str]:
        """The article's entities (surface forms, sorted) that the event's centroid holds."""
        if not feats.entities:
            return []
        ids = self.vocab.lookup(feats.entities)
        inside = event.centroid.weight_of(ids) > 0
        return sorted(compress(feats.entities.values(), inside.tolist()))

    def _mergeable(self, a: Event, b: Event, short: bool) -> bool:
        """Two events are one when their term profiles are close and their named entities
        agree: two earthquakes, or two injured players of one team, share vocabulary but not
        places and names. Events split apart stay apart."""
        if (min(a.id, b.id), max(a.id, b.id)) in self.apart:
            return False
        similarity = self._cosine(a, b)
        if short:  # headlines: sparse vectors, lower similarities, entities unreliable
            if similarity < self.s.short_merge_threshold:
                return False
            return self._specific_similarity(a, b, similarity) >= self.s.short_merge_threshold
        if similarity < self.s.merge_threshold:
            return False
        if self._specific_similarity(a, b, similarity) < self.s.merge_threshold:
            return False
        # Entity agreement (-1: one side names no one).
        agreement = self.vocab.entity_cosine(a.centroid, b.centroid)
        if not (agreement < 0 or agreement >= self.s.merge_entity_threshold):
            return False
        return not self._subjects_differ(a, b)

    def _specific_similarity(self, a: Event, b: Event, similarity: float) -> float:
        """The cosine of two events without what their heaviest shared terms owe to terms
        common in the window (Google, bankruptcy): a topic shared is not an event shared."""
        if not self.s.subject_veto:
            return similarity
        shared = np.intersect1d(a.centroid.ids, b.centroid.ids, assume_unique=True)
        if not len(shared):
            return similarity
        products = a.centroid.weight_of(shared) * b.centroid.weight_of(shared)
        top = (-products).argsort(kind="stable")[: evidence.SHARED_TERMS_CHECKED]
        pair = {a.id, b.id}
        common = sum(
            float(products[i])
            for i in top.tolist()
            if not evidence.is_specific(
                self.postings, self._live, int(shared[i]), pair, evidence.TOPIC_EVENTS
            )
        )
        return similarity - common / math.sqrt(a.norm2 * b.norm2)

    def _subjects_differ(self, a: Event, b: Event) -> bool:
        """Both events have specific subjects, and neither's subjects are in the other."""
        if not self.s.subject_veto:
            return False
        pair = {a.id, b.id}
        ours, theirs = self._event_subjects(a, pair), self._event_subjects(b, pair)
        if not ours or not theirs:
            return False
        ids = np.fromiter(ours, dtype=np.intp, count=len(ours))
        if (b.centroid.weight_of(ids) > 0).any():
            return False
        ids = np.fromiter(theirs, dtype=np.intp, count=len(theirs))
        if (a.centroid.weight_of(ids) > 0).any():
            return False
        return not self._events_share_a_name(a, b)

    def _events_share_a_name(self, a: Event, b: Event) -> bool:
        """Whether any of the names (common words aside) of `a` is in `b`'s centroid."""
        named = self.entity_names.get(a.id, {})
        ids = [t for t, surface in named.items() if not self.names.is_common(surface)]
        if not ids:
            return False
        return bool((b.centroid.weight_of(np.array(ids, dtype=np.intp)) > 0).any())
