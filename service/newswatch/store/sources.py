"""Sources: created from the config file, the CLI or an OPML import; their schedule state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func
from sqlmodel import Session, col, select

from newswatch.config import DEFAULT_INTERVAL, SourceConfig
from newswatch.store.models import Source

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
    def of(cls, s: Source) -> SourceSnapshot:
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


def sync_config_sources(session: Session, configs: list[SourceConfig]) -> dict[str, int]:
    """Make the stored sources agree with the config file.

    Sources that left the file are disabled, not deleted: their articles stay.
    """
    existing = {s.name: s for s in session.exec(select(Source)).all()}
    counts = {"added": 0, "updated": 0, "disabled": 0}
    names = set()
    for cfg in configs:
        names.add(cfg.name)
        source = existing.get(cfg.name)
        if source is None:
            source = Source(name=cfg.name, url=cfg.url, configured_url=cfg.url, origin="config")
            apply_config(source, cfg)
            session.add(source)
            counts["added"] += 1
        else:
            source.origin = "config"
            apply_config(source, cfg)
            counts["updated"] += 1
    for name, source in existing.items():
        if source.origin == "config" and name not in names and source.enabled:
            source.enabled = False
            counts["disabled"] += 1
    session.flush()
    return counts


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
    rows = session.exec(
        select(Source).where(Source.enabled == True, Source.kind != "replay")  # noqa: E712
    ).all()
    return [SourceSnapshot.of(s) for s in rows]


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
