"""Sources: created from the config file, the CLI or an OPML import; their schedule state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, case, func, insert, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from newswatch.config import DEFAULT_INTERVAL, SourceConfig
from newswatch.store.columns import utcnow
from newswatch.store.db import defer_update
from newswatch.store.models import Source, table_of

# Options kept in sources.options (JSON): what only some kinds of source use.
OPTION_FIELDS = (
    "full_text",
    "links",
    "include",
    "robots",
    "allow_private_networks",
    "tags",
    "jitter_seconds",
)


@dataclass(frozen=True)
class SourceSnapshot:
    """What a poll needs of a source, detached from any session."""

    id: int
    name: str
    url: str
    # The URL the operator gave: the private-network guard trusts its host (fetch/poll.py).
    configured_url: str
    kind: str
    etag: str | None
    last_modified: str | None
    consecutive_errors: int
    interval: timedelta
    cron: str | None
    options: dict[str, Any]
    next_fetch_at: datetime | None
    enabled: bool

    @classmethod
    def of(cls, s: Source | Row[Any]) -> SourceSnapshot:
        """From a source, or a row of its `_SNAPSHOT_COLUMNS`."""
        assert s.id is not None
        return cls(
            id=s.id,
            name=s.name,
            url=s.url,
            configured_url=s.configured_url,
            kind=s.kind,
            etag=s.etag,
            last_modified=s.last_modified,
            consecutive_errors=s.consecutive_errors,
            interval=timedelta(seconds=s.interval_seconds or DEFAULT_INTERVAL.total_seconds()),
            cron=s.cron,
            options=dict(s.options or {}),
            next_fetch_at=s.next_fetch_at,
            enabled=s.enabled,
        )


_SNAPSHOT_COLUMNS = (
    "id",
    "name",
    "url",
    "configured_url",
    "kind",
    "etag",
    "last_modified",
    "consecutive_errors",
    "interval_seconds",
    "cron",
    "options",
    "next_fetch_at",
    "enabled",
)


def _options(cfg: SourceConfig) -> dict[str, Any]:
    out: dict[str, Any] = {
        "full_text": cfg.full_text,
        "links": cfg.links,
        "include": cfg.include,
        "robots": cfg.robots,
        "allow_private_networks": cfg.allow_private_networks,
        "tags": list(cfg.tags),
    }
    if cfg.jitter is not None:
        out["jitter_seconds"] = cfg.jitter.total_seconds()
    return out


GONE_STATUS = 410


def gone_state(
    source: Source, status: int | None, pause_after: int, now: datetime
) -> dict[str, Any]:
    """The columns a poll's answer changes in the count of 410 Gone answers in a row: at
    `pause_after` (0: never) the source is paused with its reason. Returned as a state for
    record_state (written with the batch's other states), empty when nothing changes."""
    if status != GONE_STATUS:
        return {"consecutive_gone": 0} if source.consecutive_gone else {}
    count = (source.consecutive_gone or 0) + 1
    changes: dict[str, Any] = {"consecutive_gone": count}
    if pause_after and count >= pause_after and not source.paused_reason:
        changes["paused_reason"] = (
            f"410 Gone {count} times in a row (the last at {now:%Y-%m-%d %H:%M} UTC): the "
            "address is gone; fix its URL in the config file, or run `newswatch sources "
            f"resume {source.name}`"
        )
    return changes


def resume(source: Source, now: datetime) -> None:
    """Poll a paused source again, soon."""
    source.paused_reason = None
    source.consecutive_gone = 0
    source.next_fetch_at = now


def apply_config(source: Source, cfg: SourceConfig) -> None:
    detected = (source.options or {}).get("detected_kind")
    if source.configured_url != cfg.url:
        detected = None  # another URL may be another kind of source
        # A new URL in the config replaces any URL learnt from redirects, and its state.
        source.url = cfg.url
        source.configured_url = cfg.url
        source.etag = None
        source.last_modified = None
    source.kind = cfg.kind
    source.enabled = cfg.enabled
    interval = cfg.interval if cfg.cron is None else None
    source.interval_seconds = int((interval or DEFAULT_INTERVAL).total_seconds())
    source.cron = cfg.cron
    source.options = _options(cfg)
    if detected and cfg.kind == "auto":
        # What fetching found out (a page, a sitemap) survives a restart.
        source.options["detected_kind"] = detected


# The columns the config file decides; a source's other columns are its own state.
_CONFIG_COLUMNS = (
    "url",
    "configured_url",
    "etag",
    "last_modified",
    "kind",
    "origin",
    "enabled",
    "interval_seconds",
    "cron",
    "options",
)


def _config_row(current: dict[str, Any], cfg: SourceConfig) -> dict[str, Any]:
    """The config columns of a source after applying `cfg` to its `current` ones (the same
    rules as `apply_config`, on plain values)."""
    row = {k: current.get(k) for k in _CONFIG_COLUMNS}
    detected = (current.get("options") or {}).get("detected_kind")
    if current.get("configured_url") != cfg.url:
        detected = None  # another URL may be another kind of source
        row.update(url=cfg.url, configured_url=cfg.url, etag=None, last_modified=None)
    interval = cfg.interval if cfg.cron is None else None
    options = _options(cfg)
    if detected and cfg.kind == "auto":
        options["detected_kind"] = detected  # what fetching found out survives a restart
    row.update(
        kind=cfg.kind,
        origin="config",
        enabled=cfg.enabled,
        interval_seconds=int((interval or DEFAULT_INTERVAL).total_seconds()),
        cron=cfg.cron,
        options=options,
    )
    return row


def sync_config_sources(session: Session, configs: list[SourceConfig]) -> dict[str, int]:
    """Make the stored sources agree with the config file, in a few set-based statements:
    one read of every source's config columns, one insert of the new sources, one update of
    those whose config changed, one of those that left the file (see
    docs/decisions/0183-set-based-source-sync.md).

    Sources that left the file are disabled, not deleted: their articles stay.
    """
    table = table_of(Source)
    columns = [table.c.id, table.c.name, *(table.c[k] for k in _CONFIG_COLUMNS)]
    existing = {row["name"]: dict(row) for row in session.execute(select(*columns)).mappings()}
    counts = {"added": 0, "updated": 0, "unchanged": 0, "disabled": 0}
    added: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    names = set()
    for cfg in configs:
        names.add(cfg.name)
        current = existing.get(cfg.name)
        if current is None:
            row = _config_row({}, cfg)
            added.append({**row, "name": cfg.name, "created_at": utcnow()})
        else:
            row = _config_row(current, cfg)
            if any(row[k] != current[k] for k in _CONFIG_COLUMNS):
                # An edited entry is polled again, paused or not (a fixed URL, say).
                resumed = {"paused_reason": None, "consecutive_gone": 0}
                changed.append({**row, **resumed, "source_id": current["id"]})
            else:
                counts["unchanged"] += 1
    left = [
        {"source_id": row["id"]}
        for name, row in existing.items()
        if row["origin"] == "config" and row["enabled"] and name not in names
    ]
    if added:
        session.execute(insert(table), added)
    by_id = table.c.id == bindparam("source_id")
    if changed:
        session.execute(update(table).where(by_id), changed)
    if left:
        session.execute(update(table).where(by_id).values(enabled=False), left)
    counts.update(added=len(added), updated=len(changed), disabled=len(left))
    return counts


def record_state(session: Session, source: Source, state: dict[str, Any]) -> None:
    """A poll's new state of `source` (its schedule columns, last status, error ...), written
    at commit with the other polls' of the transaction: one executemany UPDATE for all the
    sources that changed the same columns, not an ORM flush of each. The loaded `source`
    shows the new values without becoming dirty (decision 0188)."""
    assert source.id is not None
    for column, value in state.items():
        set_committed_value(source, column, value)
    defer_update(session, table_of(Source), source.id, state)


def add_source(session: Session, cfg: SourceConfig, origin: str = "cli") -> Source:
    if session.exec(select(Source).where(Source.name == cfg.name)).first() is not None:
        raise ValueError(f"a source named {cfg.name!r} exists already")
    source = Source(name=cfg.name, url=cfg.url, configured_url=cfg.url, origin=origin)
    apply_config(source, cfg)
    session.add(source)
    session.flush()
    return source


def find_source(session: Session, name_or_id: str) -> Source | None:
    if name_or_id.isdigit():
        found = session.get(Source, int(name_or_id))
        if found is not None:
            return found
    return session.exec(select(Source).where(Source.name == name_or_id)).first()


def schedulable_sources(session: Session) -> list[SourceSnapshot]:
    """Every source the service polls, read as plain rows (no ORM objects to build and
    track: at start-up there may be tens of thousands)."""
    table = table_of(Source)
    fields = [table.c[k] for k in _SNAPSHOT_COLUMNS]
    query = select(*fields).where(
        table.c.enabled == True,  # noqa: E712
        table.c.kind != "replay",
        table.c.paused_reason.is_(None),
    )
    return [SourceSnapshot.of(row) for row in session.execute(query)]


def polled_source_health(session: Session) -> tuple[int, int]:
    """(failing, polled): how many of the sources the service polls failed their last fetch."""
    failing = func.count(case((col(Source.consecutive_errors) > 0, 1)))
    polled = select(failing, func.count()).where(
        Source.enabled == True,  # noqa: E712
        Source.kind != "replay",
    )
    found, total = session.exec(polled).one()
    return int(found), int(total)


def sources_by_id(session: Session, ids: list[int]) -> dict[int, Source]:
    """The sources with these ids, loaded in one query (into the session's identity map)."""
    query = select(Source).where(col(Source.id).in_(sorted(set(ids))))
    return {s.id: s for s in session.exec(query).all() if s.id is not None}


def sources_by_name(session: Session, *, failing_only: bool = False) -> list[Source]:
    """Every source by name; `failing_only`: those whose last fetch failed."""
    query = select(Source).order_by(col(Source.name))
    if failing_only:
        query = query.where(col(Source.consecutive_errors) > 0)
    return list(session.exec(query).all())


def source_names_and_urls(session: Session) -> tuple[set[str], set[str]]:
    """The names taken and the configured URLs watched already (an import skips those)."""
    rows = session.exec(select(Source.name, Source.configured_url)).all()
    return {name for name, _url in rows}, {url for _name, url in rows}


def feed_sources(session: Session, *, include_disabled: bool = False) -> list[Source]:
    """The sources that are (or may be) feeds, by name: what an OPML export lists."""
    query = select(Source).where(col(Source.kind).in_(("auto", "feed"))).order_by(col(Source.name))
    if not include_disabled:
        query = query.where(col(Source.enabled))
    return list(session.exec(query).all())


def delete_source(session: Session, source: Source) -> None:
    """Delete a source; its sightings and fetch log go with it (ON DELETE CASCADE), the
    articles stay."""
    session.delete(source)
