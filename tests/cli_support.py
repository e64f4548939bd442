"""Running `newswatch` in tests: in this process (click's CliRunner) where what is tested is
the command, as a child process where the process is the point (signals, exit status of the
real program, the installed entry point)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import structlog
from click.testing import CliRunner

from newswatch.cli import main


@contextmanager
def _logging_restored() -> Iterator[None]:
    """A command configures logging onto the runner's stderr; put back what was before, so
    later tests do not write to a closed stream."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)


def newswatch(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`newswatch ARGS` in this process with exactly `env` as its environment; the result
    as a child process's (exit status, stdout, stderr). An unexpected exception propagates to
    the test with its traceback."""
    unset: dict[str, str | None] = {name: None for name in os.environ if name not in env}
    with _logging_restored():
        result = CliRunner().invoke(
            main, list(args), env={**unset, **env}, prog_name="newswatch", catch_exceptions=False
        )
    return subprocess.CompletedProcess(
        ["newswatch", *args], result.exit_code, result.stdout, result.stderr
    )


def newswatch_process(
    *args: str, env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`newswatch ARGS` as a child process (`python -m newswatch`)."""
    return subprocess.run(
        [sys.executable, "-m", "newswatch", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
