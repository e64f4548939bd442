"""Service-level commands: run, check-config, db upgrade."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from newswatch.cli.common import AppContext, drain_alerts, pass_app
from newswatch.config import ConfigError, load_config
from newswatch.lifecycle import (
    bind_to_parent,
    exit_on_signal,
    long_lived_start,
    polling_collections,
    skip_final_collection,
)

if TYPE_CHECKING:
    from newswatch.fetch.poll import PollOutcome
    from newswatch.service import Service

# The parts of the service (issue 16). `all` runs every part in one service (its API in a
# process of its own); scheduler, fetch and deliver are the scaled mode's on Postgres, in any
# mix in one process (docs/decisions/0084-run-roles.md, 0161); group is the grouper
# (one leads, others stand by; it runs alone in its process, decision 0166).
ROLES = ("all", "api", "scheduler", "fetch", "group", "deliver")
SCALED_ROLES = ("scheduler", "fetch", "deliver")


@click.command("run")
@click.option("--once", is_flag=True, help="Poll every enabled source once, then exit.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(ROLES),
    help="Run a part of the service (repeatable). all (default): everything; api: the HTTP "
    "API and pages alone, reading the store (as `serve`); on Postgres, scheduler (claims due "
    "sources, queues batches), fetch (polls the batches; any number), group (the grouper: "
    "one leads, others stand by; runs alone) and deliver (sends the outbox; any number).",
)
@click.option("--api-child", hidden=True, help="Internal: the API process of a `run`.")
@pass_app
def run(app: AppContext, once: bool, roles: tuple[str, ...], api_child: str | None) -> None:
    """Run the service in the foreground (SIGTERM/SIGINT stop it cleanly).

    Stopped so, `run` exits 0 and `run --once` with 128 + the signal's number."""
    role = _chosen_role(roles, once, api_child)
    if role == "scaled":
        from newswatch.scaled.roles import refuse_unless_postgres, run_roles

        chosen = [r for r in SCALED_ROLES if r in roles]
        refuse_unless_postgres(app.settings.database_url, chosen)
        with long_lived_start():
            engine = app.engine()
        with polling_collections():
            asyncio.run(run_roles(engine, app.config, app.settings, chosen))
        skip_final_collection()
        return
    if role == "group":
        from newswatch.cli.group_role import run_group_role

        run_group_role(app)
        return
    if api_child:
        # First, before the API's imports (seconds on a loaded machine): from here on the
        # kernel ends this process when the service dies.
        bind_to_parent(_parent_pid(api_child))
    if role == "api":
        from newswatch.api.process import ChildLink
        from newswatch.cli.serve import serve_api

        child = ChildLink.decode(api_child) if api_child else None
        serve_api(app, app.settings.http_host, app.settings.http_port, child)
        return
    with long_lived_start():
        from newswatch.service import build_service  # the service's imports are heavy

        service = build_service(app.engine(), app.config, app.settings, serve_http=not once)
    with polling_collections():
        if once:
            _poll_once_and_report(app, service)
        else:
            _run_until_stopped(app, service)
    skip_final_collection()


def _poll_once_and_report(app: AppContext, service: Service) -> None:
    outcomes = _run_once(service)
    failed = [o for o in outcomes if o.error]
    new = sum(o.new for o in outcomes)
    click.echo(
        f"{len(outcomes)} sources polled, {new} new articles, {len(failed)} with errors",
        err=True,
    )
    exit_on_signal()  # what was queued is sent by the next run, not now
    drain_alerts(app.engine(), app.config, app.settings)


def _run_until_stopped(app: AppContext, service: Service) -> None:
    asyncio.run(service.run())


def _parent_pid(api_child: str) -> int:
    try:
        return int(api_child.split(",", 1)[0])
    except ValueError:
        raise click.BadParameter("expected PID,FD,FD,FD,FD", param_hint="--api-child") from None


def _chosen_role(roles: tuple[str, ...], once: bool, api_child: str | None) -> str:
    """What this process runs: "all", "api", "group" or "scaled" (a mix of the scaled mode's
    other roles); a usage error for roles that do not go together."""
    chosen = set(roles) or {"all"}
    if "all" in chosen:
        role = "all"
    elif chosen == {"api"}:
        role = "api"
    elif "api" in chosen:
        raise click.UsageError(
            "--role api runs alone (the API reads the store); start the other roles in "
            "processes of their own"
        )
    elif "group" in chosen:
        if len(chosen) > 1 or once:
            raise click.UsageError("--role group runs alone (one grouper process; no --once)")
        role = "group"
    else:
        role = "scaled"
    if role == "scaled" and once:
        raise click.UsageError("--once polls every source in one process; it goes with --role all")
    if role == "api" and once:
        raise click.UsageError("--once polls sources; --role api polls none")
    if api_child and role != "api":
        raise click.UsageError("--api-child goes with --role api")
    return role


def _run_once(service: Service) -> list[PollOutcome]:
    if not sys.stderr.isatty():
        return asyncio.run(service.run_once())
    total = len(service.load_sources()) or None
    with click.progressbar(length=total or 0, label="polling", file=sys.stderr) as bar:
        return asyncio.run(service.run_once(on_done=lambda _o: bar.update(1)))


@click.command("check-config")
@click.argument("path", required=False, type=click.Path())
@pass_app
def check_config(app: AppContext, path: str | None) -> None:
    """Validate the config file; list every problem with its path; exit 1 if any."""
    target = path or app.settings.config_path
    if target is None:
        raise click.UsageError("no config file: give PATH or set NEWSWATCH_CONFIG")
    try:
        config = load_config(target)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(1) from None
    click.echo(
        f"{target}: OK ({len(config.sources)} sources, {len(config.rules)} rules, "
        f"{len(config.channels)} channels)"
    )


@click.group("db")
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: AppContext) -> None:
    """Apply the schema migrations (also done at every start)."""
    from newswatch.store.db import current_revision, head_revision, upgrade

    engine = app.engine(migrate=False)
    before = current_revision(engine)
    upgrade(engine)
    click.echo(f"schema at {head_revision()} (was {before or 'empty'})")


@db.command("prune")
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@pass_app
def db_prune(app: AppContext, dry_run: bool) -> None:
    """Delete old fetch-log rows, page URLs and delivered notifications now (the service does
    it daily): NEWSWATCH_RETAIN_FETCHES_DAYS, _PAGE_URLS_DAYS, _DELIVERIES_DAYS; 0 keeps."""
    from newswatch.retention import prune

    pruned = prune(app.engine(), app.settings, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    counts = ", ".join(f"{n} {table}" for table, n in pruned.as_dict().items())
    click.echo(f"{verb}: {counts}")


@db.command("backup")
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def db_backup(app: AppContext, target: Path) -> None:
    """Copy the SQLite store to TARGET while the service runs (SQLite's online backup: a
    consistent snapshot, writers wait only for moments). For Postgres use pg_dump."""
    from newswatch.store.backup import backup_sqlite

    engine = app.engine(migrate=False)
    if engine.dialect.name != "sqlite":
        raise click.ClickException(
            "db backup copies an SQLite store; for Postgres use pg_dump (docs/operations.md)"
        )
    if target.exists():
        raise click.ClickException(f"{target} exists; name a new file")
    pages = backup_sqlite(engine, target)
    click.echo(f"backed up {pages} pages to {target}")


def register(main: click.Group) -> None:
    main.add_command(run)
    main.add_command(check_config)
    main.add_command(db)
