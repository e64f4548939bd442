"""Every mode stops cleanly on SIGTERM/SIGINT, and nothing it started outlives it — not even
after SIGKILL. Real processes against a feed server on 127.0.0.1; conditions are polled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import text

from newswatch.replay import BATCH_LINES
from newswatch.store.db import make_engine, upgrade
from tests.localserver import LocalServer, static
from tests.reliability.processes import Newswatch, catches, wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "poll"
GUARDIAN = (FIXTURES / "guardian.rss").read_bytes()
HEISE = (FIXTURES / "heise.atom").read_bytes()
FEEDS = 8  # enough feeds arriving together that parses overlap and the parse pool starts
PARSE_WORKERS = 2
STOP_SECONDS = 30  # bound on a clean stop (the in-flight fetch is released at once)
ORPHAN_SECONDS = 10  # bound on children dying after their parent did
# Tests where the store's behaviour is not the point run on SQLite alone (they are slow).
sqlite_only = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


def _feed(n: int) -> bytes:
    """Guardian's feed with links made unique per feed, so each stores its own articles."""
    return GUARDIAN.replace(b"https://www.theguardian.com/", f"https://f{n}.example/".encode())


def _write_config(tmp_path: Path, server: LocalServer, slow: bool) -> Path:
    lines = ["sources:"]
    for n in range(FEEDS):
        server.routes[f"/f{n}"] = static(_feed(n), content_type="application/rss+xml")
        lines += [f"  - name: f{n}", f"    url: {server.url(f'/f{n}')}", "    interval: 10m"]
    if slow:
        lines += ["  - name: slow", f"    url: {server.url('/slow')}", "    interval: 10m"]
    path = tmp_path / "newswatch.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class HeldResponse:
    """A route that answers only when released: a fetch the test keeps in flight."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()

    async def __call__(self, request: web.Request) -> web.Response:
        self.arrived.set()
        while not self.release.is_set():
            await asyncio.sleep(0.02)
        return web.Response(body=HEISE, content_type="application/atom+xml")


@pytest.fixture
def service_env(cli_env: dict[str, str], server: LocalServer, tmp_path: Path) -> dict[str, str]:
    return cli_env | {
        "NEWSWATCH_FIRST_RUN_SPREAD": "0",
        "NEWSWATCH_PARSE_WORKERS": str(PARSE_WORKERS),
        "NEWSWATCH_HTTP_HOST": "127.0.0.1",
    }


def _pool_started(nw: Newswatch) -> bool:
    # The parse workers and multiprocessing's resource tracker.
    return len(nw.children()) >= PARSE_WORKERS + 1


@contextmanager
def _once_with_fetch_in_flight(
    env: dict[str, str], server: LocalServer, tmp_path: Path
) -> Iterator[tuple[Newswatch, HeldResponse]]:
    """`newswatch run --once` with its parse pool up and one fetch held by the server, after
    a first SIGTERM it has seen."""
    held = HeldResponse()
    server.routes["/slow"] = held
    config = _write_config(tmp_path, server, slow=True)
    env = env | {"NEWSWATCH_CONFIG": str(config)}
    with Newswatch(["run", "--once"], env, tmp_path / "once.log") as nw:
        try:
            wait_for(lambda: held.arrived.is_set() and _pool_started(nw), 60, "the parse pool")
            nw.signal(signal.SIGTERM)
            wait_for(lambda: nw.logged("signal received"), STOP_SECONDS, "the signal to be seen")
            yield nw, held
        finally:
            held.release.set()


def test_run_once_sigterm_finishes_in_flight_fetch_and_stops_children(
    service_env: dict[str, str], server: LocalServer, tmp_path: Path
) -> None:
    with _once_with_fetch_in_flight(service_env, server, tmp_path) as (nw, held):
        held.release.set()
        code = nw.wait(STOP_SECONDS)
        wait_for(lambda: not nw.family(), ORPHAN_SECONDS, "the children to exit")
        fetched = {line["source"] for line in nw.logged("fetch")}
        assert code == 128 + signal.SIGTERM, nw.log_text()
        assert "slow" in fetched  # the fetch in flight was finished, not dropped
        assert nw.logged("stopped on signal")


@sqlite_only
def test_a_second_signal_exits_at_once(
    service_env: dict[str, str], server: LocalServer, tmp_path: Path
) -> None:
    with _once_with_fetch_in_flight(service_env, server, tmp_path) as (nw, _held):
        nw.signal(signal.SIGINT)  # the fetch is still held: only this ends the process
        code = nw.wait(STOP_SECONDS)
        wait_for(lambda: not nw.family(), ORPHAN_SECONDS, "the children to exit")
        assert code == 128 + signal.SIGINT, nw.log_text()
        assert nw.logged("second signal: exiting now")


@contextmanager
def _service_with_pool(
    env: dict[str, str], server: LocalServer, tmp_path: Path
) -> Iterator[Newswatch]:
    """`newswatch run` polling FEEDS feeds, once its parse pool is up."""
    config = _write_config(tmp_path, server, slow=False)
    with Newswatch(["run"], env | {"NEWSWATCH_CONFIG": str(config)}, tmp_path / "run.log") as nw:
        wait_for(lambda: _pool_started(nw), 60, "the parse pool")
        yield nw


@sqlite_only
def test_run_sigterm_stops_children(
    service_env: dict[str, str], server: LocalServer, tmp_path: Path
) -> None:
    with _service_with_pool(service_env, server, tmp_path) as nw:
        nw.signal(signal.SIGTERM)
        code = nw.wait(STOP_SECONDS)
        wait_for(lambda: not nw.family(), ORPHAN_SECONDS, "the children to exit")
        assert code == 0, nw.log_text()
        assert nw.logged("service stopped")


def test_children_die_with_a_killed_service(
    service_env: dict[str, str], server: LocalServer, tmp_path: Path
) -> None:
    with _service_with_pool(service_env, server, tmp_path) as nw:
        children = nw.children()
        nw.signal(signal.SIGKILL)
        assert nw.wait(STOP_SECONDS) == -signal.SIGKILL
        wait_for(lambda: not nw.family(), ORPHAN_SECONDS, f"orphans {children} to exit")
    url = service_env["DATABASE_URL"]
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split("///", 1)[1]) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _migrate(store_url: str) -> None:
    engine = make_engine(store_url)
    upgrade(engine)
    engine.dispose()


def _articles(store_url: str) -> int:
    engine = make_engine(store_url)
    try:
        with engine.connect() as db:
            return int(db.execute(text("SELECT count(*) FROM articles")).scalar_one())
    finally:
        engine.dispose()


def _write_replay(path: Path, lines: int) -> None:
    with path.open("w") as out:
        for n in range(lines):
            words = " ".join(f"w{(n * 7 + k) % 997}" for k in range(30))
            record = {"id": f"a{n}", "url": f"https://r.example/{n}", "title": f"Story {n}"}
            out.write(json.dumps(record | {"text": words, "source": "replay"}) + "\n")


def test_replay_sigterm_keeps_what_it_read_and_a_second_replay_adds_the_rest(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    lines = 3 * BATCH_LINES
    data = tmp_path / "stream.jsonl"
    _write_replay(data, lines)
    url = cli_env["DATABASE_URL"]
    _migrate(url)  # so the test can count while the replay runs
    args = ["replay", "--no-alerts", str(data)]
    with Newswatch(args, cli_env, tmp_path / "replay.log") as nw:
        wait_for(lambda: _articles(url) >= BATCH_LINES, 120, "the first batch to be stored")
        nw.signal(signal.SIGTERM)
        code = nw.wait(STOP_SECONDS)
        assert code == 128 + signal.SIGTERM, nw.log_text()
        assert nw.logged("stopped on signal")
        assert not nw.family()
    kept = _articles(url)
    assert BATCH_LINES <= kept < lines  # what was read is stored, the rest was not started
    with Newswatch(args, cli_env, tmp_path / "again.log") as nw:
        assert nw.wait(300) == 0, nw.log_text()
    assert _articles(url) == lines  # each line stored once


@sqlite_only
def test_serve_sigint_exits_cleanly(cli_env: dict[str, str], tmp_path: Path) -> None:
    _migrate(cli_env["DATABASE_URL"])
    args = ["serve", "--host", "127.0.0.1", "--port", "0"]
    with Newswatch(args, cli_env, tmp_path / "serve.log") as nw:
        wait_for(lambda: nw.logged("http server listening"), 60, "the server to listen")
        nw.signal(signal.SIGINT)
        assert nw.wait(STOP_SECONDS) == 0, nw.log_text()
        assert nw.logged("signal received") and nw.logged("http server stopped")
        assert "Traceback" not in nw.log_text()


@sqlite_only
def test_a_signal_during_start_up_is_logged(
    service_env: dict[str, str], server: LocalServer, tmp_path: Path
) -> None:
    """SIGTERM as soon as the process handles it: during imports and migrations, before the
    service listens. Whichever phase it lands in, the exit is clean and logged."""
    config = _write_config(tmp_path, server, slow=False)
    env = service_env | {"NEWSWATCH_CONFIG": str(config)}
    with Newswatch(["run"], env, tmp_path / "run.log") as nw:
        wait_for(lambda: catches(nw.pid, signal.SIGTERM), 60, "a SIGTERM handler")
        nw.signal(signal.SIGTERM)
        code = nw.wait(STOP_SECONDS)
        wait_for(lambda: not nw.family(), ORPHAN_SECONDS, "the children to exit")
        started = [line for line in nw.logged("stopped on signal") if line.get("interrupted")]
        assert (code, bool(started)) in {(128 + signal.SIGTERM, True), (0, False)}, nw.log_text()
        assert started or nw.logged("service stopped")


@sqlite_only
def test_a_fatal_error_is_logged(cli_env: dict[str, str], tmp_path: Path) -> None:
    """A part of the service failing (here its HTTP port is taken) ends the process: one
    critical line says so, with the traceback."""
    config = tmp_path / "empty.yaml"
    config.write_text("sources: []\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = cli_env | {
            "NEWSWATCH_CONFIG": str(config),
            "NEWSWATCH_HTTP_HOST": "127.0.0.1",
            "NEWSWATCH_HTTP_PORT": str(port),
        }
        with Newswatch(["run"], env, tmp_path / "run.log") as nw:
            assert nw.wait(STOP_SECONDS) == 1, nw.log_text()
            [fatal] = nw.logged("fatal error")
            assert fatal["level"] == "critical" and fatal["command"] == "run"
            assert f"could not start on 127.0.0.1:{port}" in str(fatal["exception"])


def test_workers_exit_when_their_parent_is_gone(tmp_path: Path) -> None:
    """The portable watch (where prctl is missing): a worker whose parent pid is not the one
    it was started by exits."""
    code = (
        "from newswatch.lifecycle import _exit_when_orphaned as watch; "
        f"watch({os.getpid() + 10**7}, interval=0.01)"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], timeout=STOP_SECONDS)
    assert done.returncode == 1


@sqlite_only
def test_a_command_run_in_process_gives_the_signal_handlers_back(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Tests (and programs embedding the CLI) run commands in their own process: the command
    must not leave its SIGTERM/SIGINT handling behind."""
    from tests.cli_support import newswatch

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    config = tmp_path / "empty.yaml"
    config.write_text("sources: []\n")
    done = newswatch("run", "--once", env=cli_env | {"NEWSWATCH_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr
    assert {sig: signal.getsignal(sig) for sig in before} == before


LOADED_FEEDS = 24
LOADED_ENTRIES = 50  # per feed: 1,200 articles to write


def _loaded_feed(feed: int) -> bytes:
    """Entries whose texts share no run of words (so none is another's duplicate)."""
    items = []
    for n in range(LOADED_ENTRIES):
        words = " ".join(f"w{feed}x{n}y{k}" for k in range(40))
        items.append(
            f"<item><title>Report {feed}.{n} t{feed}q{n}</title>"
            f"<link>https://load{feed}.example/{n}</link><guid>load-{feed}-{n}</guid>"
            f"<description>{words}</description></item>"
        )
    channel = f"<channel><title>Load {feed}</title>{''.join(items)}</channel>"
    return f"<rss version='2.0'>{channel}</rss>".encode()


def _loaded_config(tmp_path: Path, server: LocalServer, held: HeldResponse) -> Path:
    lines = ["sources:"]
    for n in range(LOADED_FEEDS):
        server.routes[f"/f{n}"] = static(_loaded_feed(n), content_type="application/rss+xml")
        lines += [f"  - name: f{n}", f"    url: {server.url(f'/f{n}')}", "    interval: 10m"]
    server.routes["/held"] = held
    lines += ["  - name: held", f"    url: {server.url('/held')}", "    interval: 10m"]
    path = tmp_path / "newswatch.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _source_state(store_url: str, name: str) -> tuple[object, object]:
    engine = make_engine(store_url)
    try:
        with engine.connect() as db:
            row = db.execute(
                text("SELECT last_fetch_at, etag FROM sources WHERE name = :name"), {"name": name}
            ).one()
            return row[0], row[1]
    finally:
        engine.dispose()


def test_sigterm_under_ingestion_load_drops_unwritten_polls_and_loses_nothing(
    service_env: dict[str, str], server: LocalServer, tmp_path: Path
) -> None:
    """SIGTERM while every source's poll is under way (writes queued in small transactions,
    one fetch held by its server): the service waits its grace, drops the polls not written
    and exits 0. What it dropped recorded nothing, so the next run polls it again: every
    served entry is then stored, once."""
    held = HeldResponse()
    config = _loaded_config(tmp_path, server, held)
    url = service_env["DATABASE_URL"]
    env = service_env | {
        "NEWSWATCH_CONFIG": str(config),
        "NEWSWATCH_WRITE_BATCH_ENTRIES": "5",  # many transactions queue behind each other
    }
    try:
        with Newswatch(["run"], env, tmp_path / "run.log") as nw:
            wait_for(held.arrived.is_set, 60, "the held fetch")
            nw.signal(signal.SIGTERM)
            code = nw.wait(STOP_SECONDS)
            wait_for(lambda: not nw.family(), ORPHAN_SECONDS, "the children to exit")
            assert code == 0, nw.log_text()
            [dropped] = nw.logged(
                "stopping: polls still under way are dropped; polled again at the next start"
            )
            assert int(str(dropped["dropped"])) >= 1  # the held one at least
            assert nw.logged("service stopped")
        assert _source_state(url, "held") == (None, None)  # nothing recorded for it
        stored_at_stop = _articles(url)
    finally:
        held.release.set()
    with Newswatch(["run", "--once"], env, tmp_path / "once.log") as nw:
        assert nw.wait(300) == 0, nw.log_text()
    served = LOADED_FEEDS * LOADED_ENTRIES + HEISE.count(b"<entry>")
    assert stored_at_stop < served
    assert _articles(url) == served
