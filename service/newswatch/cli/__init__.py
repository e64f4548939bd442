"""The `newswatch` command. Each stage's commands live in a module of this package;
they are thin layers over the same functions the service and the API call.

A command's module (and with it the store, the pipeline, the API) is imported only when that
command runs: `newswatch --help` lists the commands from COMMANDS below without importing
any of them (docs/decisions/0041-lazy-cli-commands.md).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import click

from newswatch import __version__
from newswatch.cli.common import AppContext, reported_errors
from newswatch.lifecycle import STOP, fatal_exit_logged

COMMAND_KEY = "newswatch.command"

# Every top-level command: the module of this package whose register(main) adds it, and its
# one-line help for `newswatch --help` (a test checks both against the modules).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("core", "Run the service in the foreground (SIGTERM/SIGINT stop it cleanly)."),
    "check-config": (
        "core",
        "Validate the config file; list every problem with its path; exit 1 if any.",
    ),
    "db": ("core", "Database maintenance."),
    "sources": ("sources", "Manage the sources to watch."),
    "articles": ("articles", "Stored articles."),
    "serve": (
        "serve",
        "Serve health, metrics, the read API and the live pages over an existing store.",
    ),
    "replay": (
        "replay",
        "Feed articles from a JSONL file through the pipeline, in file order, into the store.",
    ),
    "evaluate": (
        "replay",
        'Replay a labelled JSONL file (with "event" labels) into a throwaway store and print '
        "B-cubed precision, recall and F1 of the grouping against the labels.",
    ),
    "events": ("events", "Events: reports about the same happening, grouped."),
    "extract": (
        "extract",
        "Show what newswatch extracts from one page: title, date, author, language, "
        "canonical URL and main text.",
    ),
    "deliveries": ("alerts", "Notifications in the outbox and what became of them."),
    "rules": ("rules", "Alert rules from the config file."),
    "silence": (
        "silence",
        "Silences: no notifications for a rule (or all rules) until they expire.",
    ),
}


class LazyGroup(click.Group):
    """A group that imports a command's module when the command is looked up (to run it, or
    for its own --help), and lists every command from COMMANDS without importing any.

    Every command handles SIGTERM/SIGINT through `lifecycle.STOP` from its first line to its
    last (the long-running ones stop cleanly; the others end with a log line, as soon as a
    signal can be handled at all), logs a fatal exit before the process ends, and reports a
    NewswatchError as one line (cli/common.py, reported_errors)."""

    def invoke(self, ctx: click.Context) -> object:
        with (
            fatal_exit_logged(lambda: ctx.meta.get(COMMAND_KEY)),
            STOP.handling(),
            reported_errors(),
        ):
            return super().invoke(ctx)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta[COMMAND_KEY] = name  # for the fatal-exit line
        return name, command, rest

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            load_module(COMMANDS[cmd_name][0]).register(self)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = [(name, self._short_help(name, limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _short_help(self, name: str, limit: int) -> str:
        listed = self.commands.get(name) or click.Command(name, help=COMMANDS[name][1])
        return listed.get_short_help_str(limit)


def load_module(name: str) -> ModuleType:
    return importlib.import_module(f"newswatch.cli.{name}")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="newswatch")
@click.option(
    "--config",
    "config_path",
    envvar="NEWSWATCH_CONFIG",
    type=click.Path(),
    help="YAML config file [env: NEWSWATCH_CONFIG]",
)
@click.option("--database-url", envvar="DATABASE_URL", help="[env: DATABASE_URL]")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, database_url: str | None) -> None:
    """newswatch: watch news sources, group reports into events, alert on rules."""
    ctx.obj = AppContext(config_path=config_path, database_url=database_url)
    ctx.call_on_close(ctx.obj.close)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
