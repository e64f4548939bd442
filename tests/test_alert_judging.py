"""judge's shortcut (every match within one window: the distinct sources) against the
sliding window of `corroboration`, on random matches."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from newswatch.alerts.config import RuleConfig
from newswatch.alerts.judging import Match, corroboration, judge


def test_judge_counts_what_corroboration_counts() -> None:
    rng = random.Random(5)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    fired = unfired = shortcut = 0
    for _ in range(2000):
        matches = [
            Match(
                article_id,
                start + timedelta(hours=rng.uniform(0, 72)),
                rng.sample(range(6), rng.randint(1, 3)),
                [rng.choice("abc")],
            )
            for article_id in range(rng.randint(1, 6))
        ]
        window = rng.choice([None, timedelta(hours=2), timedelta(hours=24), timedelta(days=5)])
        rule = RuleConfig(
            name="r", query="a", channels=["ops"], min_sources=rng.randint(1, 4), window=window
        )
        points = [(source, m.at) for m in matches for source in m.sources]
        expected = corroboration(points, window)
        judged = judge(rule, 7, matches)
        if expected < rule.min_sources:
            assert judged is None
            unfired += 1
            continue
        assert judged is not None
        firing, ids = judged
        assert firing.sources == expected and firing.event_id == 7 and firing.rule == "r"
        assert ids == sorted(m.article_id for m in matches)
        assert firing.terms == sorted({t for m in matches for t in m.terms})
        fired += 1
        times = [m.at for m in matches]
        shortcut += window is None or max(times) - min(times) <= window
    # Both outcomes and both ways of counting were exercised.
    assert fired > 100 and unfired > 100 and 50 < shortcut < fired


def _most_sources_in_a_window(points: list[tuple[int, datetime]], window: timedelta | None) -> int:
    """Independent reference: the most distinct sources among points no further apart than
    `window` (all of them without one), by trying every point as a window's start."""
    if window is None:
        return len({source for source, _ in points})
    return max(
        len({source for source, at in points if start <= at <= start + window})
        for _, start in points
    )


def test_judge_at_the_window_edges() -> None:
    """Matches exactly a window apart count together, one moment later they do not; a zero
    window counts only simultaneous matches (an independent count, not corroboration)."""
    start = datetime(2026, 12, 1, tzinfo=UTC)
    hour = timedelta(hours=1)
    cases = [
        ([(1, start), (2, start + hour)], hour),  # exactly a window apart
        ([(1, start), (2, start + hour + timedelta(microseconds=1))], hour),  # just over
        ([(1, start), (2, start), (3, start)], timedelta(0)),  # simultaneous, zero window
        ([(1, start), (2, start + timedelta(microseconds=1))], timedelta(0)),
        ([(1, start), (1, start + hour), (2, start + 2 * hour)], hour),  # one source twice
    ]
    for points, window in cases:
        matches = [Match(n, at, [source], ["a"]) for n, (source, at) in enumerate(points)]
        expected = _most_sources_in_a_window(points, window)
        for min_sources in (1, 2, 3):
            rule = RuleConfig(
                name="r", query="a", channels=["ops"], min_sources=min_sources, window=window
            )
            judged = judge(rule, 7, matches)
            if expected < min_sources:
                assert judged is None, (points, window, min_sources)
            else:
                assert judged is not None and judged[0].sources == expected, (points, window)
