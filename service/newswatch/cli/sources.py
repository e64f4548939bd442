"""`newswatch sources`: list, add, remove, resume, import-opml, export-opml."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click
from pydantic import ValidationError

from newswatch.cli.common import AppContext, pass_app, progress
from newswatch.config import SourceConfig, format_loc
from newswatch.errors import NotFound
from newswatch.shared_types import FetchOutcome, SourceKind
from newswatch.store.columns import utcnow
from newswatch.store.db import session_scope
from newswatch.store.models import Source
from newswatch.store.sources import (
    add_source,
    delete_source,
    feed_sources,
    find_source,
    resume,
    source_names_and_urls,
    sources_by_name,
)


@click.group("sources")
def sources() -> None:
    """Manage the sources to watch."""


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _wait(seconds: float | None) -> str:
    """How long the last fetch waited for its host's turn: "-", "0.4s", "4m58s", "2h05m"."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _state(s: Source) -> str:
    state = "disabled" if not s.enabled else (s.last_outcome or "new")
    if s.enabled and s.paused_reason:
        state = "paused"
    if s.last_status and s.last_outcome not in (FetchOutcome.OK, FetchOutcome.NOT_MODIFIED):
        state = f"{state} {s.last_status}"
    return state


TABLE_HEADERS = ("NAME", "KIND", "STATE", "ERRS", "LAST FETCH", "NEXT", "HOST WAIT", "URL")
RIGHT_ALIGNED = {"ERRS", "HOST WAIT"}


def source_table(rows: list[Source]) -> list[str]:
    """The `sources list` table: each column as wide as its widest cell (names are never cut),
    the last fetch's error on a line of its own under a failing source."""
    cells = [
        (
            s.name,
            s.kind,
            _state(s),
            str(s.consecutive_errors),
            _when(s.last_fetch_at),
            _when(s.next_fetch_at),
            _wait(s.host_wait_seconds),
            s.url,
        )
        for s in rows
    ]
    widths = [max(len(c) for c in column) for column in zip(TABLE_HEADERS, *cells, strict=True)]

    def line(values: tuple[str, ...]) -> str:
        parts = [
            value.rjust(width) if header in RIGHT_ALIGNED else value.ljust(width)
            for header, value, width in zip(TABLE_HEADERS, values, widths, strict=True)
        ]
        return " ".join(parts[:-1]) + " " + values[-1]  # no padding after the last column

    lines = [line(TABLE_HEADERS)]
    for s, row in zip(rows, cells, strict=True):
        lines.append(line(row))
        if s.paused_reason:
            lines.append(f"  paused: {s.paused_reason}")
        if s.last_error and s.consecutive_errors:
            lines.append(f"  error: {s.last_error[:200]}")
        if s.pending_entries:
            lines.append(f"  {s.pending_entries} entries wait for the next polls")
    return lines


def source_row(s: Source) -> dict[str, object]:
    return {
        "id": s.id,
        "name": s.name,
        "kind": s.kind,
        "url": s.url,
        "enabled": s.enabled,
        "origin": s.origin,
        "interval_seconds": s.interval_seconds,
        "cron": s.cron,
        "last_fetch_at": s.last_fetch_at.isoformat() if s.last_fetch_at else None,
        "last_status": s.last_status,
        "last_outcome": s.last_outcome,
        "consecutive_errors": s.consecutive_errors,
        "last_error": s.last_error,
        "pending_entries": s.pending_entries,
        "paused_reason": s.paused_reason,
        "next_fetch_at": s.next_fetch_at.isoformat() if s.next_fetch_at else None,
        "host_wait_seconds": s.host_wait_seconds,
    }


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@click.option("--errors", is_flag=True, help="Only sources whose last fetch failed.")
@pass_app
def list_sources(app: AppContext, as_json: bool, errors: bool) -> None:
    """List sources with their fetch state and errors. HOST WAIT is how long the last fetch
    waited for its host's turn: a host with more sources than its politeness gap allows
    serves them in turn, late."""
    with session_scope(app.engine()) as session:
        rows = sources_by_name(session, failing_only=errors)
    if as_json:
        for s in rows:
            click.echo(json.dumps(source_row(s)))
        return
    if not rows:
        click.echo("no sources", err=True)
        return
    for line in source_table(rows):
        click.echo(line)


def _source_config(**fields: object) -> SourceConfig:
    try:
        return SourceConfig.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{format_loc(tuple(e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise click.BadParameter(problems) from None


@sources.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--interval", help="e.g. 10m (default 15m)")
@click.option("--cron", help='e.g. "*/15 * * * *"')
@click.option(
    "--kind",
    type=click.Choice([k.value for k in SourceKind if k != SourceKind.REPLAY]),
    default=SourceKind.AUTO.value,
)
@click.option("--links", help="pages: CSS selector of the article links")
@click.option("--include", help="pages: regular expression article URLs must match")
@click.option("--full-text", is_flag=True, help="feeds: fetch each new entry's main text")
@click.option("--no-robots", is_flag=True, help="do not honour robots.txt")
@click.option("--allow-private-networks", is_flag=True, help="follow links to internal addresses")
@pass_app
def add(
    app: AppContext,
    name: str,
    url: str,
    interval: str | None,
    cron: str | None,
    kind: str,
    links: str | None,
    include: str | None,
    full_text: bool,
    no_robots: bool,
    allow_private_networks: bool,
) -> None:
    """Add a source (the running service picks it up within a minute)."""
    cfg = _source_config(
        name=name,
        url=url,
        interval=interval,
        cron=cron,
        kind=kind,
        links=links,
        include=include,
        full_text=full_text,
        robots=not no_robots,
        allow_private_networks=allow_private_networks,
    )
    with session_scope(app.engine()) as session:
        try:
            source = add_source(session, cfg)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"added source {source.name} (id {source.id})")


@sources.command("remove")
@click.argument("name")
@click.option(
    "--purge", is_flag=True, help="Delete the source, its sightings and fetch log (articles stay)."
)
@pass_app
def remove(app: AppContext, name: str, purge: bool) -> None:
    """Stop watching a source. Without --purge it is disabled and its history kept."""
    with session_scope(app.engine()) as session:
        source = find_source(session, name)
        if source is None:
            raise NotFound(f"no source named {name!r}")
        if source.origin == "config":
            click.echo(
                f"note: {source.name} comes from the config file; remove it there too, or it "
                "is enabled again at the next start",
                err=True,
            )
        if purge:
            delete_source(session, source)
            click.echo(f"deleted source {name}")
        else:
            source.enabled = False
            click.echo(f"disabled source {name}")


@sources.command("resume")
@click.argument("name")
@pass_app
def resume_source(app: AppContext, name: str) -> None:
    """Poll a paused source again (one that answered 410 Gone too often); the running
    service picks it up within a minute."""
    with session_scope(app.engine()) as session:
        source = find_source(session, name)
        if source is None:
            raise NotFound(f"no source named {name!r}")
        if not source.paused_reason:
            click.echo(f"source {source.name} is not paused", err=True)
            return
        resume(source, utcnow())
        click.echo(f"resumed source {source.name}")


@sources.command("import-opml")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--interval", help="interval for the imported sources (default 15m)")
@pass_app
def import_opml(app: AppContext, file: Path, interval: str | None) -> None:
    """Import the feeds of an OPML file; bad outlines are reported, the rest imported."""
    from newswatch.fetch.opml import parse_opml

    records, problems = parse_opml(file.read_bytes())
    for problem in problems:
        click.echo(f"{file}: {problem}", err=True)
    added = skipped = 0
    with (
        session_scope(app.engine()) as session,
        progress(records, len(records), "importing") as bar,
    ):
        names, existing_urls = source_names_and_urls(session)
        for record in bar:
            if record.url in existing_urls:
                skipped += 1
                continue
            name = _unique_name(record.name or record.url, names)
            try:
                cfg = _source_config(name=name, url=record.url, interval=interval)
            except click.BadParameter as exc:
                click.echo(f"{file}: line {record.line}: {exc.message}", err=True)
                problems.append(exc.message)
                continue
            add_source(session, cfg, origin="opml")
            names.add(name)
            existing_urls.add(record.url)
            added += 1
    click.echo(f"imported {added} sources ({skipped} already present)")
    if problems:
        raise SystemExit(1)


@sources.command("export-opml")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--all", "include_all", is_flag=True, help="Also disabled sources.")
@pass_app
def export_opml(app: AppContext, file: Path | None, include_all: bool) -> None:
    """Write the feed sources as OPML (to FILE, or standard output): for a feed reader, a
    backup, or `import-opml` elsewhere. Page and sitemap sources are not feeds and stay out."""
    from newswatch.fetch.opml import OpmlFeed, write_opml

    with session_scope(app.engine()) as session:
        feeds = [
            OpmlFeed(name=s.name, url=s.configured_url, html_url=None, line=None)
            for s in feed_sources(session, include_disabled=include_all)
        ]
    document = write_opml(feeds)
    if file is None:
        click.echo(document.decode("utf-8"), nl=False)
    else:
        file.write_bytes(document)
        click.echo(f"exported {len(feeds)} sources to {file}", err=True)


def _unique_name(base: str, taken: set[str]) -> str:
    base = base.strip()[:190] or "source"
    name, n = base, 2
    while name in taken:
        name, n = f"{base} ({n})", n + 1
    return name


def register(main: click.Group) -> None:
    main.add_command(sources)
