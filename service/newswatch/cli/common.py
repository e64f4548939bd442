"""What every command needs: settings, the config file, the store, and error reporting.

Imported by `newswatch --help`: what a command needs (config, store) is imported when the
command asks for it, not here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import click

from newswatch import errors
from newswatch.durations import parse_duration

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from newswatch.config import FileConfig, Settings

T = TypeVar("T")


@dataclass
class AppContext:
    config_path: str | None = None
    database_url: str | None = None
    _settings: Settings | None = field(default=None, repr=False)
    _config: FileConfig | None = field(default=None, repr=False)
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from newswatch.config import load_settings
            from newswatch.log import configure_logging

            overrides = {}
            if self.database_url:
                overrides["DATABASE_URL"] = self.database_url
            if self.config_path:
                overrides["NEWSWATCH_CONFIG"] = self.config_path
            self._settings = load_settings(**overrides)
            configure_logging(self._settings.log_level, self._settings.log_format)
        return self._settings

    @property
    def config(self) -> FileConfig:
        """The config file, or ConfigError with every problem listed (reported_errors)."""
        if self._config is None:
            from newswatch.config import load_config

            self._config = load_config(self.settings.config_path)
        return self._config

    def engine(self, migrate: bool = True) -> Engine:
        """The store, or StoreUnavailable in one line (reported_errors)."""
        if self._engine is None:
            from newswatch.store.db import open_store

            self._engine = open_store(self.settings.database_url, migrate=migrate)
        return self._engine

    def close(self) -> None:
        """Close the store's connections when the command ends (the CLI's tests run many
        commands in one process)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


pass_app = click.make_pass_decorator(AppContext)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Any NewswatchError a command raises becomes "Error: <where>: <message>" on standard
    error and exit status 1, without a traceback: one line, except for a config file's
    problems, which are listed one a line under their count (the user fixes them all at
    once). Every command runs inside this (cli/__init__.py, LazyGroup.invoke)."""
    try:
        yield
    except errors.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except errors.NewswatchError as exc:
        raise click.ClickException(exc.one_line()) from None


def format_time(value: datetime | None) -> str:
    """A stored time (UTC) to the minute, or "-" for none."""
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def parse_since(value: str | None) -> datetime | None:
    """--since accepts an age ("24h", "7d") or an ISO date/time."""
    if value is None:
        return None
    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an age (24h, 7d) nor an ISO date", param_hint="--since"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@contextmanager
def progress(
    items: Iterable[T], length: int | None = None, label: str = ""
) -> Iterator[Iterable[T]]:
    """A progress bar on a terminal; the plain iterable otherwise."""
    if sys.stderr.isatty():
        with click.progressbar(items, length=length, label=label, file=sys.stderr) as bar:
            yield bar
    else:
        yield items


def drain_alerts(engine: Engine, config: FileConfig, settings: Settings) -> None:
    """Send the notifications a one-off command queued before it exits."""
    if not (config.rules and config.channels):
        return
    from newswatch.alerts.delivery import drain_outbox  # heavy imports only when needed

    drained = drain_outbox(engine, config, settings, timeout=settings.replay_drain_timeout)
    click.echo(f"alerts: {drained}", err=True)
