"""The `newswatch` command. Each stage's commands live in a module of this package;
they are thin layers over the same functions the service and the API call."""

from __future__ import annotations

import importlib
import sys

import click

from newswatch import __version__
from newswatch.cli.common import AppContext
from newswatch.lifecycle import fatal_exit_logged

COMMAND_KEY = "newswatch.command"


class _Main(click.Group):
    """The command group whose every command logs a fatal exit (an exception nobody caught,
    a signal during start-up) before the process ends."""

    def invoke(self, ctx: click.Context) -> object:
        with fatal_exit_logged(lambda: ctx.meta.get(COMMAND_KEY)):
            return super().invoke(ctx)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta[COMMAND_KEY] = name  # for the fatal-exit line
        return name, command, rest


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
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


# Modules of this package whose register(main) adds their commands; one line per stage.
COMMAND_MODULES = [
    "core",
    "sources",
    "articles",
    "serve",
    "replay",
    "events",
    "extract",
    "alerts",
    "rules",
    "silence",
]


def _register() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"newswatch.cli.{name}").register(main)


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
