"""`newswatch replay FILE.jsonl` and `newswatch evaluate FILE.jsonl`."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import click
from sqlalchemy import Engine

from newswatch.cli.common import AppContext, drain_alerts, pass_app
from newswatch.config import FileConfig, Settings
from newswatch.lifecycle import STOP, exit_on_signal
from newswatch.replay import ReplayResult, bcubed, count_lines, gold_labels, replay
from newswatch.store.db import open_store

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _replay_with_progress(
    engine: Engine,
    config: FileConfig,
    settings: Settings,
    path: Path,
    alerts: bool,
    stop: Callable[[], bool] | None = None,
) -> ReplayResult:
    from newswatch.pipeline import Pipeline  # heavy imports only when replaying

    pipeline = Pipeline(engine, config, settings, alerts=alerts)
    if not sys.stderr.isatty():
        return replay(engine, pipeline, path, stop=stop)
    with click.progressbar(length=count_lines(path), label="replaying", file=sys.stderr) as bar:
        return replay(engine, pipeline, path, on_line=lambda: bar.update(1), stop=stop)


def _report_errors(result: ReplayResult) -> None:
    for error in result.errors:
        click.echo(f"error: {error}", err=True)


@click.command("replay")
@click.argument("path", type=FILE)
@click.option(
    "--assignments",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help='Write {"id": <input id>, "event_id": <event>} per input line to this JSONL file.',
)
@click.option("--no-alerts", is_flag=True, help="Do not run alert rules or send anything.")
@pass_app
def replay_command(app: AppContext, path: Path, assignments: Path | None, no_alerts: bool) -> None:
    """Feed articles from a JSONL file through the pipeline, in file order, into the store.

    Each line: {"id", "url", "source", "title", "text", "published"}; other fields are
    ignored. Bad lines are reported with their line number and skipped (exit status 1).
    SIGTERM/SIGINT stop it after the lines read so far (exit status 128 + the signal's number).
    """
    engine = app.engine()
    alerts = not no_alerts
    with STOP.listen(lambda: None):  # the replay looks at STOP.requested between lines
        result = _replay_with_progress(
            engine, app.config, app.settings, path, alerts, stop=lambda: STOP.requested
        )
    if assignments is not None:
        with assignments.open("w", encoding="utf-8") as out:
            for key, event_id in result.event_of.items():
                out.write(json.dumps({"id": key, "event_id": event_id}) + "\n")
    if alerts and not STOP.requested:  # what was queued is sent by the next run, not now
        drain_alerts(engine, app.config, app.settings)
    _report_errors(result)
    click.echo(
        f"{result.ingested} lines ingested, {result.new_articles} new articles, "
        f"{len(set(result.event_of.values()) - {None})} events, {len(result.errors)} errors",
        err=True,
    )
    exit_on_signal()
    if result.errors:
        raise SystemExit(1)


@click.command("evaluate")
@click.argument("path", type=FILE)
@click.option("--json", "as_json", is_flag=True, help="Print the scores as one JSON object.")
@pass_app
def evaluate_command(app: AppContext, path: Path, as_json: bool) -> None:
    """Replay a labelled JSONL file (with "event" labels) into a throwaway store and print
    B-cubed precision, recall and F1 of the grouping against the labels."""
    gold = gold_labels(path)
    if not gold:
        raise click.ClickException(f"{path}: no line carries an 'event' label")
    with tempfile.TemporaryDirectory(prefix="newswatch-evaluate-") as tmp:
        engine = open_store(f"sqlite:///{tmp}/evaluate.db")
        try:
            result = _replay_with_progress(engine, app.config, app.settings, path, alerts=False)
        finally:
            engine.dispose()
    _report_errors(result)
    precision, recall, f1 = bcubed(gold, result.event_of)
    events = len(set(result.event_of.values()) - {None})
    scores = {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "articles": len(gold),
        "gold_events": len(set(gold.values())),
        "events": events,
    }
    if as_json:
        click.echo(json.dumps(scores))
    else:
        click.echo(
            f"B-cubed precision {precision:.3f}  recall {recall:.3f}  F1 {f1:.3f}  "
            f"({len(gold)} articles, {scores['gold_events']} labelled events, {events} found)"
        )


def register(main: click.Group) -> None:
    main.add_command(replay_command)
    main.add_command(evaluate_command)
