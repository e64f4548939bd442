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
