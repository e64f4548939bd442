"""Whether the matches of a (rule, event) meet the rule: corroboration by distinct sources
within the rule's window, and when a decided (rule, event) needs a notification again."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from newswatch.alerts.config import RuleConfig
from newswatch.store.alerts import AlertStateRecord


class Match(NamedTuple):
    """An article that matched a rule, as judging reads it."""

    article_id: int
    at: datetime  # the time the article counts at (store/timing.py article_time)
    sources: Sequence[int]  # the carriers that count for the rule (articles.counted_sources)
    terms: list[str]  # the words of the rule's query found in it


@dataclass
class Firing:
    """Why a rule fires on an event (or would, in a dry run)."""

    rule: str
    event_id: int
    sources: int  # distinct sources within the window
    terms: list[str]


def corroboration(points: Iterable[tuple[int, datetime]], window: timedelta | None) -> int:
    """Most distinct sources whose matches fall within one span of `window` (all when None)."""
    items = list(points)
    if window is None or not items:
        return len({source for source, _ in items})
    times = [at for _, at in items]
    if max(times) - min(times) <= window:  # one span holds them all (no sort needed)
        return len({source for source, _ in items})
    items.sort(key=lambda p: p[1])
    best = 0
    counts: dict[int, int] = defaultdict(int)
    start = 0
    for source, at in items:
        counts[source] += 1
        while at - items[start][1] > window:
            old = items[start][0]
            counts[old] -= 1
            if counts[old] == 0:
                del counts[old]
            start += 1
        best = max(best, len(counts))
    return best


def judge(
    rule: RuleConfig, event_id: int, matches: Sequence[Match]
) -> tuple[Firing, list[int]] | None:
    """Whether the matching articles `matches` of a (rule, event) (each once) meet the rule:
    the firing and the matching articles' ids, in order."""
    distinct = {source for m in matches for source in m.sources}
    if len(distinct) < rule.min_sources:
        return None  # too few sources in all: no window can hold enough
    window = rule.window
    if window is None or max(m.at for m in matches) - min(m.at for m in matches) <= window:
        count = len(distinct)  # one span holds every match (as corroboration would find)
    else:
        count = corroboration(((s, m.at) for m in matches for s in m.sources), window)
        if count < rule.min_sources:
            return None
    terms = sorted({t for m in matches for t in m.terms})
    return Firing(rule.name, event_id, count, terms), sorted(m.article_id for m in matches)


def due_update(rule: RuleConfig, state: AlertStateRecord, sources: int) -> bool:
    """Whether a (rule, event) already decided on needs a notification now: never sent
    (it was silenced), or, with updates on, the event reached the next threshold: 2x, 4x,
    8x ... min_sources distinct sources."""
    if state.revision == 0:
        return True
    if not rule.updates:
        return False
    threshold = rule.min_sources
    while threshold <= state.sources_notified:
        threshold *= 2
    return sources >= threshold
