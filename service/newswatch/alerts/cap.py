"""At most NEWSWATCH_ALERT_MAX_PER_RULE notifications per rule in each window of
NEWSWATCH_ALERT_CAP_WINDOW; the events beyond are told in one summary notification per
rule, channel and window, sent when the window ends.

A flood (a 60,000-entry feed opening as many events) queued 119,932 notifications before;
nobody reads them, and they hold up the ones that matter. Windows are fixed (aligned to the
epoch), so the count is one query per decision round, and a restart keeps it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row
from sqlmodel import Session

from newswatch.alerts.config import ChannelConfig, RuleConfig
from newswatch.alerts.policy import schedule
from newswatch.store.alerts import notified_counts_since
from newswatch.store.outbox import enqueue_summary

if TYPE_CHECKING:
    from newswatch.config import Settings

DEFAULT_LIMIT = 100
DEFAULT_WINDOW = timedelta(hours=1)
# Events listed by name in a summary; the rest are counted.
LISTED = 20
OVERFLOW = "overflow"  # the summary's payload "kind"; its event_id is 0 (no event)


class RuleCap:
    """Counts each rule's notified events in the current window; past the limit, an event is
    recorded as capped (alert_state.status) and added to the window's summary."""

    def __init__(self, limit: int = DEFAULT_LIMIT, window: timedelta = DEFAULT_WINDOW):
        self.limit = limit
        self.window = window
        self._counts: dict[tuple[str, datetime], int] = {}
        # The round's capped events, per (rule, window start): the summary lines to add.
        self._overflow: dict[tuple[str, datetime], tuple[RuleConfig, list[dict[str, Any]]]] = {}
        self._last_window: tuple[datetime, tuple[datetime, datetime]] | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None) -> RuleCap:
        if settings is None:
            return cls()
        return cls(settings.alert_max_per_rule, timedelta(seconds=settings.alert_cap_window))

    def new_round(self, session: Session, rules: set[str], now: datetime) -> None:
        """Count, in one query, what `rules` notified in the window containing `now` (the
        store has the counts: a round may follow another process's)."""
        start = self.window_of(now)[0]
        counts = notified_counts_since(session, rules, start)
        self._counts = {(rule, start): count for rule, count in counts.items()}
        self._overflow = {}

    def window_of(self, now: datetime) -> tuple[datetime, datetime]:
        if self._last_window is not None and self._last_window[0] == now:
            return self._last_window[1]  # a round asks about its own time for every event
        seconds = self.window.total_seconds()
        start = datetime.fromtimestamp(now.timestamp() // seconds * seconds, UTC)
        self._last_window = (now, (start, start + self.window))
        return start, start + self.window

    def full(self, rule: str, now: datetime) -> bool:
        """Whether `rule` has had its notifications of the window containing `now` (a
        rule new_round did not count had none)."""
        return self._counts.get((rule, self.window_of(now)[0]), 0) >= self.limit

    def counted(self, rule: str, now: datetime) -> None:
        """A notification of `rule` was decided at `now`."""
        key = (rule, self.window_of(now)[0])
        self._counts[key] = self._counts.get(key, 0) + 1

    def overflow(
        self, rule: RuleConfig, event_id: int, event: Row[Any] | None, sources: int, now: datetime
    ) -> None:
        """Add event `event_id` (its row `event`: title, first_seen) to the rule's summary of
        the window; written for the round by `write_summaries`."""
        line: dict[str, Any] = {
            "id": None,
            "event_id": event_id,
            "title": event.title if event is not None else None,
            "url": None,
            "sources": [],
            "source_count": sources,
            "published": (event.first_seen if event is not None else now).isoformat(),
        }
        key = (rule.name, self.window_of(now)[0])
        self._overflow.setdefault(key, (rule, []))[1].append(line)

    def write_summaries(
        self, session: Session, channels: dict[str, ChannelConfig], now: datetime
    ) -> bool:
        """Queue or grow each summary the round added events to, to each of the rule's
        channels (a read and a write per summary, not per event); True if any was."""
        queued = False
        for (_name, start), (rule, lines) in sorted(self._overflow.items(), key=lambda i: i[0]):
            end = start + self.window
            key = f"{rule.name}:{OVERFLOW}:{start.isoformat()}"
            for channel_name in rule.channels:
                # Sent when the window ends, or later when the channel defers (quiet hours,
                # digest).
                not_before, batch_key = schedule(rule, channels[channel_name], end, None, None)
                queued |= enqueue_summary(
                    session,
                    rule=rule.name,
                    channel=channel_name,
                    key=key,
                    first=partial(self._first_summary, rule, start, lines),
                    grow=partial(self._grown_by, lines=lines),
                    not_before=max(not_before, end),
                    batch_key=batch_key,
                    now=now,
                )
        self._overflow = {}
        return queued

    def _first_summary(
        self, rule: RuleConfig, start: datetime, lines: list[dict[str, Any]]
    ) -> dict[str, Any]:
        summary = self._summary(rule, start, start + self.window, lines[0])
        return self._grown_by(summary, lines[1:])

    def _grown_by(self, payload: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
        for line in lines:
            payload = _grown(payload, line, self.limit)
        return payload

    def _summary(
        self, rule: RuleConfig, start: datetime, end: datetime, line: dict[str, Any]
    ) -> dict[str, Any]:
        """The summary's payload: shaped like an event's (docs/webhooks.md), so that every
        channel renders it; kind "overflow", the events as its lines."""
        return _retitled(
            {
                "rule": rule.name,
                "event_id": 0,
                "revision": 1,
                "kind": OVERFLOW,
                "first_seen": start.isoformat(),
                "last_seen": end.isoformat(),
                "article_count": 0,
                "source_count": line["source_count"],
                "sources": [],
                "articles": [line],
                "suppressed_events": 1,
                "limit": self.limit,
                "window_seconds": self.window.total_seconds(),
                "why": {
                    "query": rule.query,
                    "matched_terms": [],
                    "matching_articles": 0,
                    "sources_in_window": line["source_count"],
                    "min_sources": rule.min_sources,
                    "window": rule.window.total_seconds() if rule.window else None,
                },
            }
        )


def _retitled(payload: dict[str, Any]) -> dict[str, Any]:
    count, limit = payload["suppressed_events"], payload["limit"]
    hours = payload["window_seconds"] / 3600
    payload["title"] = (
        f"{count} more events matched rule {payload['rule']}: not notified one by one "
        f"(at most {limit} in {hours:g} h)"
    )
    return payload


def _grown(payload: dict[str, Any], line: dict[str, Any], limit: int) -> dict[str, Any]:
    grown = dict(payload)
    grown["suppressed_events"] += 1
    grown["source_count"] = max(grown["source_count"], line["source_count"])
    if len(grown["articles"]) < LISTED:
        grown["articles"] = [*grown["articles"], line]
    return _retitled(grown)
