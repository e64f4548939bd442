"""Noise control: when a notification may go out, and which others it goes out with.

Returns (not_before, batch_key); the delivery worker sends rows sharing a batch key as one
message once they are due.
- digest hourly/daily: everything of the period goes out at its end, together;
- quiet hours: deferred to the end of the quiet span, together (a digest, never dropped);
- group_wait: matches of a rule within one wait window go out together at its end;
- repeat_interval: a follow-up about the same event waits until the interval has passed.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from newswatch.alerts.config import ChannelConfig, RuleConfig, quiet_span


def _floor(now: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    steps = (now - epoch) // step
    return epoch + steps * step


def quiet_end(now: datetime, span: tuple[time, time]) -> datetime | None:
    """The end of the quiet span `now` falls in (UTC), or None when not quiet."""
    start, end = span
    t = now.timetz().replace(tzinfo=None)
    today_end = now.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if start <= end:  # e.g. 12:00-14:00
        return today_end if start <= t < end else None
    if t >= start:  # wrapped, e.g. 22:00-07:00, evening part
        return today_end + timedelta(days=1)
    if t < end:  # wrapped, morning part
        return today_end
    return None


def schedule(
    rule: RuleConfig,
    channel: ChannelConfig,
    now: datetime,
    last_sent: datetime | None = None,
) -> tuple[datetime, str | None]:
    # A rule's own digest or quiet hours batch its notifications; a channel's batch every
    # rule's notifications to that channel into one message.
    digest = rule.digest or channel.digest
    if digest is not None:
        step = timedelta(hours=1) if digest == "hourly" else timedelta(days=1)
        start = _floor(now, step)
        owner = rule.name if rule.digest else f"channel:{channel.name}"
        return start + step, f"{owner}:digest:{start.isoformat()}"
    quiet = rule.quiet_hours or channel.quiet_hours
    if quiet is not None:
        end = quiet_end(now, quiet_span(quiet))
        if end is not None:
            owner = rule.name if rule.quiet_hours else f"channel:{channel.name}"
            return end, f"{owner}:quiet:{end.isoformat()}"
    not_before, batch_key = now, None
    wait = rule.group_wait if rule.group_wait is not None else channel.group_wait
    if wait:
        start = _floor(now, wait)
        not_before, batch_key = start + wait, f"{rule.name}:wait:{start.isoformat()}"
    if rule.repeat_interval and last_sent is not None:
        not_before = max(not_before, last_sent + rule.repeat_interval)
    return not_before, batch_key
