"""How a newswatch process ends.

Every command handles SIGTERM and SIGINT through `STOP` while it runs (the command group
installs it). The long-running modes (`run`, `run --once`, `replay`, `serve`) listen
(`STOP.listen`) once their main loop runs: the signal only tells them, and they finish what
is in flight, stop their children and return. A signal that arrives while nothing listens
(start-up: migrations, loading the config; any short command) raises `SignalExit` where the
process is, which rolls back any open transaction, like Ctrl-C does for any Python program,
and ends the process with a log line. A second
signal exits at once (the operator does not want to wait; the store's transactions and the
parse workers' parent-death signal keep that safe).

Every fatal exit leaves a log line: `fatal_exit_logged` wraps the command line, and
faulthandler prints the Python stack on a crash of the interpreter itself.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING

import structlog

from newswatch.log import configure_logging, get_logger

if TYPE_CHECKING:
    import asyncio

log = get_logger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
ORPHAN_CHECK_SECONDS = 1.0


def signal_exit_code(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number."""
    return 128 + signum


class SignalExit(BaseException):
    """SIGTERM/SIGINT arrived while nothing was listening for it (start-up)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopRequest:
    """The process-wide answer to SIGTERM/SIGINT: the first signal is recorded and passed to
    the listeners; with none listening it raises SignalExit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._listeners: list[Callable[[], None]] = []

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def signal_name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None

    def install(self) -> None:
        """Take over SIGTERM and SIGINT (only the main thread can)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)

    @contextlib.contextmanager
    def handling(self) -> Iterator[None]:
        """Handle SIGTERM/SIGINT while inside; then the previous handlers again and no
        request (a command run in-process, as the tests do, leaves the process as it was)."""
        previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        self.install()
        try:
            yield
        finally:
            if threading.current_thread() is threading.main_thread():
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            self.signum = None

    @contextlib.contextmanager
    def listen(self, listener: Callable[[], None]) -> Iterator[None]:
        """Call `listener` (in the main thread, from a signal handler: it must only set a
        flag or wake a loop) when a stop is requested; at once if one already was."""
        self._listeners.append(listener)
        try:
            if self.requested:
                listener()
            yield
        finally:
            self._listeners.remove(listener)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None:
            with contextlib.suppress(Exception):  # a log line must not stop the exit
                log.warning("second signal: exiting now", signal=signal.Signals(signum).name)
            os._exit(signal_exit_code(signum))
        self.signum = signum
        if not self._listeners:
            raise SignalExit(signum)
        for listener in list(self._listeners):
            listener()


STOP = StopRequest()


@contextlib.contextmanager
def stop_on_signal(event: asyncio.Event) -> Iterator[None]:
    """While inside (in a running event loop): a stop request logs the signal and sets
    `event` in its loop, where the mode finishes what is in flight."""
    import asyncio  # here: the CLI imports this module at every start (decision 0041)

    loop = asyncio.get_running_loop()

    def stop() -> None:
        log.info("signal received", signal=STOP.signal_name)
        event.set()

    def wake() -> None:  # runs in the signal handler: only hand over to the loop
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(stop)

    with STOP.listen(wake):
        yield


@contextlib.contextmanager
def fatal_exit_logged(command: Callable[[], str | None]) -> Iterator[None]:
    """Log why the process ends when it ends by an exception or a signal; deliberate exits
    (click's errors, SystemExit) pass through untouched. `command()` names what ran."""
    # A crash of the interpreter itself prints its stack to stderr (when stderr is a file:
    # not under click's test runner).
    with contextlib.suppress(AttributeError, ValueError, OSError, RuntimeError):
        faulthandler.enable()
    try:
        yield
    except SignalExit as exc:
        _ensure_logging()
        code = signal_exit_code(exc.signum)
        # Start-up (or the last clean-up, after the mode stopped listening): the work was
        # interrupted where it stood, not finished.
        log.warning(
            "stopped on signal",
            command=command(),
            signal=str(exc),
            exit_code=code,
            interrupted=True,
        )
        raise SystemExit(code) from None
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:
        if _is_click_exit(exc):
            raise
        _ensure_logging()
        log.critical("fatal error", command=command(), error=repr(exc), exc_info=True)
        raise SystemExit(1) from None


def _is_click_exit(exc: Exception) -> bool:
    import click

    exits = click.exceptions
    return isinstance(exc, exits.ClickException | exits.Exit | exits.Abort)


def _ensure_logging() -> None:
    """A failure before the settings were read (a bad setting) is still logged as JSON/console
    lines like the rest."""
    if not structlog.is_configured():
        configure_logging("INFO", "auto")


def exit_on_signal() -> None:
    """For modes whose work a signal cut short (`run --once`, `replay`): log and exit with
    128 + the signal's number, so a caller (cron, a shell script) sees it did not finish."""
    if STOP.signum is None:
        return
    code = signal_exit_code(STOP.signum)
    log.warning("stopped on signal", signal=STOP.signal_name, exit_code=code)
    sys.exit(code)


# Allocations between two collections of the youngest generation once the service runs
# (Python's default is 700; docs/decisions/0186-start-up-frozen-for-the-collector.md).
YOUNG_COLLECTION_ALLOCATIONS = 10_000


@contextlib.contextmanager
def collector_paused(freeze_after: bool = False) -> Iterator[None]:
    """No automatic cyclic garbage collection inside; with `freeze_after`, what was made
    inside is moved out of the collector's sight when it ends. Nested or with collection
    already off: the outer caller decides (process-wide state)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if freeze_after:
            gc.freeze()
        gc.enable()


def long_lived_start() -> contextlib.AbstractContextManager[None]:
    """Start-up without the cyclic garbage collector: what is made inside (the modules, the
    settings and config, the store's engine, the service) lives as long as the process. Each
    collection while importing and reading a big config walked every object made so far
    (a fifth of the CPU of a `run --once` over 2,000 unchanged feeds); afterwards they are
    frozen out of the collector's sight, so later collections walk what polling makes only
    (docs/decisions/0186-start-up-frozen-for-the-collector.md)."""
    return collector_paused(freeze_after=True)


@contextlib.contextmanager
def polling_collections() -> Iterator[None]:
    """The youngest generation collected every YOUNG_COLLECTION_ALLOCATIONS allocations
    inside, the previous threshold restored after. Polling keeps thousands of polls alive at
    once (their tasks, frames, futures): at Python's default of 700 a young collection
    walked them some 400 times in a 2,000-feed `run --once`, at 10,000 twenty times; cyclic
    garbage waits a little longer for its collection."""
    previous = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_ALLOCATIONS, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def skip_final_collection() -> None:
    """For a long-running mode that stopped cleanly: the interpreter's last garbage
    collection at exit walks every object the process ever made (seconds on a loaded
    machine, counted against a container's stop timeout) and frees nothing the exit would
    not. Moved out of the collector's sight, they are left to the exit."""
    gc.freeze()


def bind_to_parent(parent_pid: int) -> None:
    """Initializer of a worker process (the parse pool): die with the parent, and leave
    Ctrl-C to it.

    A parent killed by SIGKILL or the OOM killer runs no clean-up, and a pool worker waiting
    for work would wait forever (it holds both ends of its task pipe). On Linux the kernel
    sends the worker SIGKILL when its parent dies (PR_SET_PDEATHSIG, bound to the thread that
    started it: the event loop's, which lives as long as the pool); elsewhere a thread
    watches the parent's pid. multiprocessing's resource tracker then exits by itself: it
    stops when the last process holding its pipe is gone.
    """
    # Ctrl-C reaches the terminal's whole process group; the parent decides when workers stop
    # (after their parses). SIGTERM keeps its default: the pool terminates broken workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not _parent_death_signal(signal.SIGKILL):
        threading.Thread(
            target=_exit_when_orphaned, args=(parent_pid,), name="parent-watch", daemon=True
        ).start()
    if os.getppid() != parent_pid:  # the parent died before the above took effect
        os._exit(1)


def _parent_death_signal(signum: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _exit_when_orphaned(parent_pid: int, interval: float = ORPHAN_CHECK_SECONDS) -> None:
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os._exit(1)
