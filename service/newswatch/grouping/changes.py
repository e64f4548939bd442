"""What the grouping stage tells the stages after it (alerts, metrics)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EventSplit:
    """Event `event_id` proved to hold two events: the articles `moved` left it to form
    `new_event_id` (events.split_from = event_id)."""

    event_id: int
    new_event_id: int
    moved: tuple[int, ...]


@dataclass(frozen=True)
class EventChange:
    """An article was assigned to an event, or (`sighting`) an article already in an event
    was seen at a source that had not carried it: the event may have one more source.

    `opened`: the article opened a new event. `duplicate_of`: stage 1 found it a copy of that
    article. `merged_event_ids`: events absorbed into `event_id` by this assignment (their ids
    stay resolvable through events.merged_into). `split`: the article's event, grown by it,
    proved to hold two events and split (after any merges).
    """

    article_id: int
    event_id: int
    opened: bool
    duplicate_of: int | None = None
    merged_event_ids: tuple[int, ...] = ()
    sighting: bool = False
    split: EventSplit | None = None
