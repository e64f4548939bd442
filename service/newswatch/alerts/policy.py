"""Noise control: when a notification may go out, and which others it goes out with.

Returns (not_before, batch_key); the delivery worker sends rows sharing a batch key as one
message once they are due.
- digest hourly/daily: everything of the period goes out at its end, together;
- quiet hours: deferred to the end of the quiet span, together (a digest, never dropped);
- quiet hours and digest periods are read on the clock of the rule's (else the channel's)
  `timezone`, UTC by default, so "22:00-07:00" in Europe/Berlin follows daylight saving;
- group_wait: the first match of a rule opens a group that collects its matches for the
  wait and goes out, together, at its end (a later match joins the open group);
- repeat_interval: a follow-up about the same event waits until the interval has passed.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from newswatch.alerts.config import ChannelConfig, RuleConfig, quiet_span, zone


def _period(now: datetime, digest: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The start and end (UTC) of the local hour or day `now` falls in."""
    local = now.astimezone(tz)
    if digest == "hourly":
        start = local.replace(minute=0, second=0, microsecond=0)
        # An hour is an hour in UTC too (also across a daylight-saving change).
        start_utc = start.astimezone(UTC)
        return start_utc, start_utc + timedelta(hours=1)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    # Adding a day to an aware time is wall-clock arithmetic: the next local midnight, also
    # when that day has 23 or 25 hours.
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def group_wait(rule: RuleConfig, channel: ChannelConfig) -> timedelta | None:
    """The rule's group_wait, else its channel's (the rule's own setting wins, also 0)."""
    return rule.group_wait if rule.group_wait is not None else channel.group_wait


def quiet_end(
    now: datetime, span: tuple[time, time], tz: ZoneInfo | None = None
) -> datetime | None:
    """The end (UTC) of the quiet span `now` falls in, the span read on the clock of `tz`
    (UTC by default); None when not quiet."""
    local = now.astimezone(tz or UTC)
    start, end = span
    t = local.time()
    # Wall-clock arithmetic in the zone, so an end at 07:00 stays 07:00 across a change of
    # daylight saving time in between.
    today_end = local.replace(
        hour=end.hour, minute=end.minute, second=0, microsecond=0, tzinfo=None
    )
    if start <= end:  # e.g. 12:00-14:00
        found = today_end if start <= t < end else None
    elif t >= start:  # wrapped, e.g. 22:00-07:00, evening part
        found = today_end + timedelta(days=1)
    elif t < end:  # wrapped, morning part
        found = today_end
    else:
        found = None
    return None if found is None else found.replace(tzinfo=local.tzinfo).astimezone(UTC)


def schedule(
    rule: RuleConfig,
    channel: ChannelConfig,
    now: datetime,
    last_sent: datetime | None = None,
    open_group: tuple[datetime, str] | None = None,
) -> tuple[datetime, str | None]:
    """When the notification may go out and the batch it goes out with; `open_group` is the
    rule's group_wait group to this channel still collecting (`outbox.open_wait_group`)."""
    # A rule's own digest or quiet hours batch its notifications; a channel's batch every
    # rule's notifications to that channel into one message.
    tz = zone(rule.timezone or channel.timezone)
    digest = rule.digest or channel.digest
    if digest is not None:
        start, end = _period(now, digest, tz)
        owner = rule.name if rule.digest else f"channel:{channel.name}"
        return end, f"{owner}:digest:{start.isoformat()}"
    quiet = rule.quiet_hours or channel.quiet_hours
    if quiet is not None:
        quiet_until = quiet_end(now, quiet_span(quiet), tz)
        if quiet_until is not None:
            owner = rule.name if rule.quiet_hours else f"channel:{channel.name}"
            return quiet_until, f"{owner}:quiet:{quiet_until.isoformat()}"
    not_before, batch_key = now, None
    wait = group_wait(rule, channel)
    if wait:
        if open_group is not None and open_group[0] > now:
            not_before, batch_key = open_group
        else:
            not_before, batch_key = now + wait, f"{rule.name}:wait:{now.isoformat()}"
    if rule.repeat_interval and last_sent is not None:
        not_before = max(not_before, last_sent + rule.repeat_interval)
    return not_before, batch_key
