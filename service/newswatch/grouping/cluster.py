"""Online event clustering, independent of the store.

Each article becomes a sparse vector (TF-IDF of title, lead and body with online IDF, plus
normalised entities) and joins the most similar recent event whose centroid is close enough,
or opens a new one. Candidates come from an inverted index over entities and rare terms,
restricted to the time window: the cost per article does not grow with the store.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain, compress, islice, repeat
from operator import add, itemgetter, mul

import numpy as np

from newswatch.grouping.minhash import LSHIndex, MinHasher, token_hashes
from newswatch.grouping.settings import GroupingSettings
from newswatch.grouping.text import Features, extract

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
# Document frequencies kept before the words seen once are forgotten.
DF_MAX = 500_000
# Before this many documents the IDF is too young to call terms rare.
IDF_WARMUP = 50


@dataclass
class Event:
    id: int
    first_seen: float
    last_seen: float
    centroid: dict[str, float] = field(default_factory=dict)
    norm2: float = 0.0
    size: int = 0
    merged_into: int | None = None


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


_BY_VALUE = itemgetter(1)


def _top(items, n: int) -> list:  # type: ignore[no-untyped-def]
    """The n (key, value) pairs of largest value, in heapq.nlargest's order: sorted() with a
    C key function is several times faster than nlargest with a lambda on these sizes."""
    return sorted(items, key=_BY_VALUE, reverse=True)[:n]


def _dot(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(map(mul, a.values(), map(b.get, a, repeat(0.0))))


def _cosine(a: Event, b: Event) -> float:
    """Cosine of two events' centroids (their squared norms are kept up to date)."""
    if not a.norm2 or not b.norm2:
        return 0.0
    return _dot(a.centroid, b.centroid) / math.sqrt(a.norm2 * b.norm2)


class Clusterer:
    """Assigns articles to events one at a time; `when` is a POSIX timestamp."""

    def __init__(self, settings: GroupingSettings | None = None):
        self.s = settings or GroupingSettings()
        self.window = self.s.window_hours * 3600.0
        self.hasher = MinHasher()
        self.lsh = LSHIndex()
        self.df: dict[str, int] = {}
        self.docs = 0
        self.events: dict[int, Event] = {}
        self.postings: dict[str, deque[int]] = {}
        self.article_event: dict[int, int] = {}
        self.lsh_times: deque[tuple[float, int]] = deque()
        self.latest = 0.0  # the latest article time seen (the stream's "now")
        self.added = 0
        self._top_cache: dict[int, tuple[int, list[str]]] = {}
        # Surface forms of each event's entities ("DPRK" for key "@north korea").
        self.entity_names: dict[int, dict[str, str]] = {}

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

    def _idf(self, term: str) -> float:
        return math.log((self.docs + 1) / (self.df.get(term, 0) + 1)) + 1.0

    def vector(self, feats: Features) -> dict[str, float]:
        """Unit-length TF-IDF vector, heaviest terms first; entities are extra features
        weighted entity_weight."""
        return self._vector(feats)[0]

    def _vector(self, feats: Features) -> tuple[dict[str, float], list[str]]:
        """The vector, and its rare terms (the ones that look up candidates), heaviest first.

        idf = log((docs + 1) / (df + 1)) + 1; numpy over the ~100 terms of an article, as
        a Python loop calling log for each was a tenth of the cost of grouping."""
        terms, entities = feats.terms, feats.entities
        keys = [*terms, *entities]
        if not keys:
            return {}, []
        n_terms = len(terms)
        df = np.fromiter(map(self.df.get, keys, repeat(0)), dtype=np.float64, count=len(keys))
        weight = (math.log(self.docs + 1) + 1.0) - np.log1p(df)
        tf = np.fromiter(terms.values(), dtype=np.float64, count=n_terms)
        # Sub-linear tf; a term seen only with a weight below 1 (body words) keeps it.
        weight[:n_terms] *= np.where(tf >= 1, 1.0 + np.log(np.maximum(tf, 1.0)), tf)
        weight[n_terms:] *= self.s.entity_weight
        # The heaviest terms carry the similarity; the long tail only costs time. (A stable
        # sort: ties keep the order of the text.)
        top = np.argsort(-weight, kind="stable")[: self.s.vector_terms]
        chosen = weight[top]
        chosen /= math.sqrt(float(chosen @ chosen)) or 1.0
        kept = [keys[i] for i in top.tolist()]
        # A term in more than RARE_SHARE of documents is too common to find candidates by.
        limit = max(2.0, RARE_SHARE * self.docs) if self.docs >= IDF_WARMUP else math.inf
        rare = list(islice(compress(kept, (df[top] <= limit).tolist()), CANDIDATE_TERMS))
        return dict(zip(kept, chosen.tolist(), strict=True)), rare

    def _learn(self, feats: Features) -> None:
        self.docs += 1
        df = self.df
        for keys in (feats.terms, feats.entities):
            df.update(zip(keys, map(add, map(df.get, keys, repeat(0)), repeat(1)), strict=True))

    # --- candidates -----------------------------------------------------------------
    def resolve(self, event_id: int) -> int:
        event = self.events.get(event_id)
        while event is not None and event.merged_into is not None:
            event_id = event.merged_into
            event = self.events.get(event_id)
        return event_id

    def _candidates(self, rare: list[str], when: float) -> list[Event]:
        """Recent events that share the most of the article's rare terms (votes counted in
        C over the posting lists)."""
        votes = Counter(chain.from_iterable(map(self.postings.get, rare, repeat(()))))
        best = _top(votes.items(), self.s.candidates * 2)
        out: list[Event] = []
        seen: set[int] = set()
        for event_id, _ in best:
            event = self.events.get(self.resolve(event_id))
            if event is None or event.id in seen or when - event.last_seen > self.window:
                continue
            seen.add(event.id)
            out.append(event)
            if len(out) >= self.s.candidates:
                break
        return out

    def _score(self, vec: dict[str, float], event: Event) -> float:
        return _dot(vec, event.centroid) / math.sqrt(event.norm2) if event.norm2 else 0.0

    # --- updates --------------------------------------------------------------------
    def _post(self, event_id: int, terms: Iterable[str]) -> None:
        """Index the event under `terms` (its newest article's heaviest ones)."""
        postings = self.postings
        for term in terms:
            posting = postings.get(term)
            if posting is None:
                posting = postings[term] = deque(maxlen=POSTING_DEPTH)
            if not posting or posting[-1] != event_id:
                posting.append(event_id)

    def _join(
        self, event: Event, vec: dict[str, float], when: float, cross: float | None = None
    ) -> None:
        """Add the article's vector to the event; `cross` is vec · centroid when the caller
        has it already (scoring computed it)."""
        c = event.centroid
        if cross is None:
            cross = _dot(vec, c)
        c.update(zip(vec, map(add, map(c.get, vec, repeat(0.0)), vec.values()), strict=True))
        event.norm2 += 2 * cross + 1.0
        event.size += 1
        if len(c) > 2 * CENTROID_TERMS:
            # A big event's light terms barely move its scores but make every look-up
            # slower: keep the heaviest.
            event.centroid = c = dict(_top(c.items(), CENTROID_TERMS))
            event.norm2 = sum(map(mul, c.values(), c.values()))
            names = self.entity_names.get(event.id)
            if names:  # and the surface forms of entities no longer in it
                self.entity_names[event.id] = {k: v for k, v in names.items() if k in c}
        event.last_seen = max(event.last_seen, when)
        event.first_seen = min(event.first_seen, when)
        self._post(event.id, islice(vec, POSTED_FEATURES))  # vectors are heaviest first

    def _merge(self, keep: Event, gone: Event) -> None:
        c = keep.centroid
        keep.norm2 += 2 * _dot(gone.centroid, c) + gone.norm2
        g = gone.centroid
        c.update(zip(g, map(add, map(c.get, g, repeat(0.0)), g.values()), strict=True))
        keep.size += gone.size
        keep.first_seen = min(keep.first_seen, gone.first_seen)
        keep.last_seen = max(keep.last_seen, gone.last_seen)
        gone.merged_into = keep.id
        gone.centroid = {}
        names = self.entity_names.setdefault(keep.id, {})
        for key, surface in self.entity_names.pop(gone.id, {}).items():
            names.setdefault(key, surface)
        self._post(keep.id, [k for k, _ in _top(c.items(), POSTED_FEATURES)])

    def expire(self, now: float) -> None:
        """Forget articles and events older than the window, so memory stays flat however
        long the stream: their signatures, assignments, centroids and entity names."""
        horizon = now - self.window
        while self.lsh_times and self.lsh_times[0][0] < horizon:
            _, key = self.lsh_times.popleft()
            self.lsh.remove(key)
            self.article_event.pop(key, None)
        old = [e.id for e in self.events.values() if e.last_seen < horizon]
        for event_id in old:
            del self.events[event_id]
            self.entity_names.pop(event_id, None)
            self._top_cache.pop(event_id, None)
        # Posting lists that point only at forgotten events go too.
        events = self.events
        stale = [t for t, posting in self.postings.items() if not any(e in events for e in posting)]
        for term in stale:
            del self.postings[term]
        if len(self.df) > DF_MAX:
            # Words seen once are most of a growing vocabulary (names, typos); forgetting
            # them moves their IDF by log(2) and keeps memory flat over months.
            self.df = {t: n for t, n in self.df.items() if n > 1}

    # --- the entry point ------------------------------------------------------------
    def add(
        self,
        article_id: int,
        title: str | None,
        body: str | None,
        when: float,
        feats: Features | None = None,
        signature: np.ndarray | None = None,
    ) -> Decision:
        """Assign one article; the event id of a new event is the article's id."""
        feats = feats or self.features(title, body)
        signature = self._signature(feats, signature)
        self._learn(feats)
        vec, rare = self._vector(feats)
        decision = self._decide(article_id, feats, vec, rare, when, signature)
        decision.signature = signature
        self._remember(article_id, decision.event_id, when, signature, feats)
        return decision

    def _signature(self, feats: Features, given: np.ndarray | None) -> np.ndarray | None:
        """Counts the text's words; the `given` signature, else the MinHash of the text's
        beginning (None for short texts)."""
        tokens = token_hashes(feats.shingle_text)
        feats.words = len(tokens)
        if given is not None or feats.words < self.s.duplicate_min_tokens:
            return given
        return self.hasher.signature(tokens)

    def restore(
        self,
        article_id: int,
        event_id: int,
        title: str | None,
        body: str | None,
        when: float,
        signature: np.ndarray | None = None,
    ) -> None:
        """Replay a stored assignment (at start): learn the article and put it in `event_id`
        without deciding anything, so a restarted process continues the same events. The
        near-duplicate signature is computed from the text unless given."""
        feats = self.features(title, body)
        signature = self._signature(feats, signature)
        self._learn(feats)
        vec = self.vector(feats)
        event = self.events.get(event_id)
        if event is None:
            event = self.events[event_id] = Event(event_id, when, when)
        self._join(event, vec, when)
        self._remember(article_id, event_id, when, signature, feats)

    def _remember(
        self,
        article_id: int,
        event_id: int,
        when: float,
        signature: np.ndarray | None,
        feats: Features,
    ) -> None:
        self.article_event[article_id] = event_id
        self.lsh_times.append((when, article_id))
        self.latest = max(self.latest, when)
        self.added += 1
        if self.added % EXPIRE_EVERY == 0:
            self.expire(self.latest)
        names = self.entity_names.setdefault(event_id, {})
        for key, surface in feats.entities.items():
            names.setdefault(key, surface)
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
        weight = event.centroid.get
        keys = sorted((k for k in names if weight(k)), key=weight, reverse=True)[:n]
        top = [names[k] for k in keys]
        self._top_cache[event.id] = (event.size, top)
        return top

    def _decide(
        self,
        article_id: int,
        feats: Features,
        vec: dict[str, float],
        rare: list[str],
        when: float,
        signature: np.ndarray | None,
    ) -> Decision:
        if signature is not None:
            hit = self.lsh.query(signature, self.s.duplicate_jaccard)
            if hit is not None and hit[0] in self.article_event:
                event = self.events.get(self.resolve(self.article_event[hit[0]]))
                if event is not None:
                    self._join(event, vec, when)
                    return Decision(event.id, False, "duplicate", hit[1], duplicate_of=hit[0])
        scored = sorted(
            ((self._score(vec, e), e) for e in self._candidates(rare, when)),
            key=lambda se: (-se[0], se[1].id),
        )
        short = feats.words < self.s.short_text_words
        threshold = self.s.short_threshold if short else self.s.threshold
        if not scored or scored[0][0] < threshold:
            event = Event(article_id, when, when)
            self.events[article_id] = event
            self._join(event, vec, when)
            return Decision(article_id, True, "new", scored[0][0] if scored else 0.0)
        score, event = scored[0]
        shared = sorted(feats.entities[k] for k in feats.entities if event.centroid.get(k, 0.0) > 0)
        self._join(event, vec, when, cross=score * math.sqrt(event.norm2))
        merged = []
        for other_score, other in scored[1 : 1 + MERGE_CHECKS]:
            if other_score < threshold:
                break
            if self._mergeable(event, other, short):
                keep, gone = (event, other) if event.size >= other.size else (other, event)
                self._merge(keep, gone)
                merged.append(gone.id)
                event = keep
        return Decision(event.id, False, "similar", score, shared_entities=shared, merged=merged)

    def _mergeable(self, a: Event, b: Event, short: bool) -> bool:
        """Two events are one when their term profiles are close and their named entities
        agree: two earthquakes, or two injured players of one team, share vocabulary but not
        places and names."""
        similarity = _cosine(a, b)
        if short:  # headlines: sparse vectors, lower similarities, entities unreliable
            return similarity >= self.s.short_merge_threshold
        if similarity < self.s.merge_threshold:
            return False
        ea = {k: v for k, v in a.centroid.items() if k[0] == "@"}
        eb = {k: v for k, v in b.centroid.items() if k[0] == "@"}
        if not ea or not eb:
            return True
        return _dot(self._unit(ea), self._unit(eb)) >= self.s.merge_entity_threshold

    @staticmethod
    def _unit(vec: dict[str, float]) -> dict[str, float]:
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {k: v / norm for k, v in vec.items()}
