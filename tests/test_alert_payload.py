"""A payload's event fields, built once an event and round (payload.event_fields), and what
each rule's payload adds to them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from newswatch.alerts.config import RuleConfig
from newswatch.alerts.judging import Firing
from newswatch.alerts.payload import event_fields, event_payload

T0 = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)


def _rule(name: str) -> RuleConfig:
    return RuleConfig(name=name, query="port", channels=["ops"], min_sources=2, window="24h")


def test_one_events_fields_serve_every_rules_payload() -> None:
    row = SimpleNamespace(
        title="Port closed",
        first_seen=T0,
        last_seen=T0 + timedelta(hours=2),
        article_count=9,
        source_count=6,
    )
    fields = event_fields(row, 42, "https://news.example.org")  # type: ignore[arg-type]
    entries = {i: {"id": i} for i in (1, 2, 3)}
    payloads = [
        event_payload(
            _rule(name),
            Firing(name, 42, sources, [name]),
            1,
            matched,
            event=fields,
            articles=entries,
            sources=names,
        )
        for name, sources, matched, names in (
            ("a", 2, [1, 2], ["w", "p"]),
            ("b", 3, [1, 2, 3], ["x", "p", "w"]),
        )
    ]
    for payload in payloads:
        assert payload["url"] == "https://news.example.org/events/42"
        assert payload["title"] == "Port closed"
        assert payload["first_seen"] == "2026-12-08T01:00:00+00:00"
        assert payload["last_seen"] == "2026-12-08T03:00:00+00:00"
        assert (payload["article_count"], payload["source_count"]) == (9, 6)
    a, b = payloads
    assert (a["rule"], a["sources"], [e["id"] for e in a["articles"]]) == ("a", ["p", "w"], [1, 2])
    assert (b["rule"], b["why"]["sources_in_window"], b["why"]["matching_articles"]) == ("b", 3, 3)
    assert a["why"]["window"] == 86400.0 and a["kind"] == "event"


def test_without_an_events_row_a_payload_counts_its_own_matches() -> None:
    fields = event_fields(None, 7, None)
    payload = event_payload(
        _rule("a"), Firing("a", 7, 2, []), 2, [4, 5, 6], event=fields, articles={}, sources=[]
    )
    assert payload["url"] is None and payload["title"] is None
    assert payload["first_seen"] is None and payload["last_seen"] is None
    assert (payload["article_count"], payload["source_count"]) == (3, 2)
    assert payload["kind"] == "update" and payload["articles"] == []
