"""Real `newswatch` processes for lifecycle tests: start one with a marker in its environment,
wait for conditions by polling, and find every process that carries the marker.

Every process the service starts (parse workers, multiprocessing's resource tracker) inherits
the marker, so `marked(marker)` finds them even after they were re-parented to PID 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MARKER_VARIABLE = "NEWSWATCH_TEST_PROCESS_MARKER"


def marked(marker: str) -> list[int]:
    """The pids of live processes whose environment carries `marker` (zombies excluded)."""
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and not _zombie(entry):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _zombie(entry: Path) -> bool:
    stat = (entry / "stat").read_text()
    return stat[stat.rindex(")") + 2] == "Z"


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for `signum` (SigCgt in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt"))
    return bool(int(mask, 16) >> (signum - 1) & 1)


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `condition` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Newswatch:
    """A `newswatch` command running as a child process, its stderr collected in a file."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Newswatch:
        env = self.env | {MARKER_VARIABLE: self.marker, "NEWSWATCH_LOG_FORMAT": "json"}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "newswatch", *self.args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def family(self) -> list[int]:
        """The process and every process it started that is still alive."""
        return marked(self.marker)

    def children(self) -> list[int]:
        return [pid for pid in self.family() if pid != self.pid]

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, object]]:
        lines = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return lines

    def logged(self, event: str) -> list[dict[str, object]]:
        return [line for line in self.log_lines() if line.get("event") == event]

    def stop(self) -> None:
        """Clean-up after a test: kill what is left of the family."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in marked(self.marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)

    def __enter__(self) -> Newswatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
