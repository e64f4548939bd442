"""`newswatch rules list` and `newswatch rules test` (a dry run over stored history)."""

from __future__ import annotations

import json
from datetime import timedelta

import click

from newswatch.alerts.config import RuleConfig
from newswatch.alerts.judging import Firing
from newswatch.alerts.query import QueryError, parse
from newswatch.alerts.stage import AlertStage
from newswatch.cli.common import AppContext, parse_since, pass_app
from newswatch.errors import NotFound
from newswatch.store.db import session_scope
from newswatch.store.event_lookup import event_titles


@click.group("rules")
def rules() -> None:
    """Alert rules from the config file."""


def _span(value: timedelta | None) -> str:
    if value is None:
        return "any time"
    seconds = int(value.total_seconds())
    if seconds % 86400 == 0 and seconds >= 2 * 86400:
        return f"{seconds // 86400}d"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def describe(rule: RuleConfig) -> str:
    """One line: the rule's query and what it needs to fire."""
    needs = f"min_sources {rule.min_sources} within {_span(rule.window)}"
    extra = [f"channels {', '.join(rule.channels)}"]
    if rule.updates:
        extra.append("updates")
    if rule.sources:
        extra.append(f"sources {', '.join(rule.sources)}")
    if rule.exclude_sources:
        extra.append(f"not from {', '.join(rule.exclude_sources)}")
    for name in ("group_wait", "repeat_interval"):
        if (value := getattr(rule, name)) is not None:
            extra.append(f"{name} {_span(value)}")
    if rule.quiet_hours:
        extra.append(f"quiet {rule.quiet_hours}")
    if rule.digest:
        extra.append(f"digest {rule.digest}")
    state = "" if rule.enabled else " (disabled)"
    return f"{rule.name}{state}: {rule.query}  [{needs}; {'; '.join(extra)}]"


@rules.command("list")
@pass_app
def rules_list(app: AppContext) -> None:
    """The configured rules."""
    for rule in app.config.rules:
        click.echo(describe(rule))


def _rule_to_test(
    app: AppContext, name: str | None, query: str | None, min_sources: int
) -> RuleConfig:
    if (name is None) == (query is None):
        raise click.UsageError("give a rule NAME or --query, not both")
    if query is not None:
        try:
            parse(query)
        except QueryError as exc:
            raise click.BadParameter(str(exc), param_hint="--query") from None
        return RuleConfig(name="(query)", query=query, channels=["-"], min_sources=min_sources)
    found = [r for r in app.config.rules if r.name == name]
    if not found:
        raise NotFound(f"no rule named {name!r} in the config file")
    return found[0].model_copy(update={"enabled": True})


@rules.command("test")
@click.argument("name", required=False)
@click.option("--query", "-q", help="Test this query instead of a configured rule.")
@click.option(
    "--min-sources", type=click.IntRange(1), default=1, show_default=True, help="with --query"
)
@click.option(
    "--since", default="7d", show_default=True, help="news time: age (24h, 7d) or ISO date"
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@pass_app
def rules_test(
    app: AppContext,
    name: str | None,
    query: str | None,
    min_sources: int,
    since: str,
    as_json: bool,
) -> None:
    """Dry run over stored history: the events that would have fired and why. Writes and
    sends nothing."""
    rule = _rule_to_test(app, name, query, min_sources)
    engine = AlertStage([rule], [])
    with session_scope(app.engine()) as session:
        firings = engine.dry_run(session, parse_since(since))
        titles = event_titles(session, [f.event_id for f in firings])
    for f in firings:
        if as_json:
            click.echo(json.dumps({**f.__dict__, "title": titles.get(f.event_id)}))
        else:
            click.echo(_explain(rule, f, titles.get(f.event_id)))
    if not as_json:
        click.echo(f"{len(firings)} events would have fired", err=True)


def _explain(rule: RuleConfig, firing: Firing, title: str | None) -> str:
    return (
        f"event {firing.event_id}: {title or '(untitled)'}\n"
        f"    {firing.sources} sources within {_span(rule.window)} "
        f"(needs {rule.min_sources}); matched {', '.join(firing.terms)}"
    )


def register(main: click.Group) -> None:
    main.add_command(rules)
