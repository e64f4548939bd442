"""`newswatch run` serves its API from a process of its own (`run --role api`) behind a probe
front that accepts the port's connections (decisions 0083, 0089): real processes on
127.0.0.1. The API process reports the scheduler's state (/readyz) and the service's
metrics (/metrics); /healthz fails while ingestion's loop is stuck; both children die with
the service even after SIGKILL, stop with it on SIGTERM, and take the service down when one
of them dies. `--role api` alone reads only; the roles are checked."""

from __future__ import annotations

import os
import resource
import signal
from pathlib import Path

import httpx
import pytest

from newswatch.api.process import ChildLink
from newswatch.store.db import current_revision, make_engine
from tests.cli_support import newswatch
from tests.localserver import LocalServer, static
from tests.reliability.processes import Newswatch, marked, wait_for

START_SECONDS = 120  # bounds on waiting for a condition (a hang guard, not a latency claim)
sqlite_only = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
FEED = (Path(__file__).resolve().parents[1] / "fixtures" / "poll" / "guardian.rss").read_bytes()


def _base_url(nw: Newswatch) -> str:
    wait_for(lambda: nw.logged("http server listening"), START_SECONDS, "the API to listen")
    return f"http://127.0.0.1:{nw.logged('http server listening')[0]['port']}"


def _pids_with(nw: Newswatch, argument: bytes) -> list[int]:
    pids = []
    for pid in marked(nw.marker):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if argument in cmdline:
            pids.append(pid)
    return pids


def _api_pids(nw: Newswatch) -> list[int]:
    return _pids_with(nw, b"--api-child")


def _front_pids(nw: Newswatch) -> list[int]:
    return _pids_with(nw, b"newswatch.api.front")


@pytest.fixture
def running(
    cli_env: dict[str, str], server: LocalServer, tmp_path: Path
) -> tuple[dict[str, str], Path]:
    server.routes["/feed"] = static(FEED, content_type="application/rss+xml")
    config = tmp_path / "newswatch.yaml"
    config.write_text(f"sources:\n  - name: guardian\n    url: {server.url('/feed')}\n")
    env = cli_env | {
        "NEWSWATCH_CONFIG": str(config),
        "NEWSWATCH_HTTP_HOST": "127.0.0.1",
        "NEWSWATCH_FIRST_RUN_SPREAD": "0",
        "NEWSWATCH_PARSE_WORKERS": "0",
    }
    return env, tmp_path


def test_the_api_process_reports_the_scheduler_and_the_service_metrics(
    running: tuple[dict[str, str], Path],
) -> None:
    env, tmp_path = running
    with Newswatch(["run"], env, tmp_path / "run.log") as nw:
        base = _base_url(nw)
        [api] = _api_pids(nw)
        assert api != nw.pid
        with httpx.Client(base_url=base, timeout=30) as http:
            ready = http.get("/readyz").json()
            assert ready["checks"]["scheduler"]["running"] is True, ready
            assert ready["checks"]["scheduler"]["last_tick_age_seconds"] is not None

            def polled() -> bool:
                text = http.get("/metrics").text
                return any(
                    line.startswith("newswatch_articles_stored_total ") and float(line.split()[1])
                    for line in text.splitlines()
                )

            # Counted by the service's process, shown by the API's.
            wait_for(polled, START_SECONDS, "the stored articles in /metrics")
            text = http.get("/metrics").text
            assert text.count("# TYPE newswatch_sources gauge") == 1
            assert 'newswatch_sources{state="enabled"} 1.0' in text
        nw.signal(signal.SIGTERM)
        assert nw.wait(START_SECONDS) == 0, nw.log_text()
        wait_for(lambda: not nw.family(), START_SECONDS, "the API process to exit")
        assert nw.logged("API process stopped") and nw.logged("probe front stopped")


@sqlite_only
def test_the_api_process_and_the_front_die_with_the_service(
    running: tuple[dict[str, str], Path],
) -> None:
    """Issue 20 §5: after SIGKILL of the service (no clean-up runs) no child is left."""
    env, tmp_path = running
    with Newswatch(["run"], env, tmp_path / "run.log") as nw:
        _base_url(nw)
        wait_for(lambda: _api_pids(nw) and _front_pids(nw), START_SECONDS, "both children")
        nw.signal(signal.SIGKILL)
        nw.wait(START_SECONDS)
        wait_for(lambda: not nw.family(), START_SECONDS, "the children to exit")


def _socket_of(pid: int, fd: int) -> str:
    return os.readlink(f"/proc/{pid}/fd/{fd}")  # "socket:[inode]": the same for every copy


def _ends_of(pid: int, fds: list[int]) -> set[str]:
    """What the descriptors `fds` of `pid` point to; one closed since it was listed (the
    service opens and closes files as it runs) is left out."""
    ends = set()
    for fd in fds:
        try:
            ends.add(_socket_of(pid, fd))
        except OSError:  # gone meanwhile
            continue
    return ends


def test_a_descriptor_closed_after_listing_is_left_out(tmp_path: Path) -> None:
    kept = os.open(tmp_path / "kept", os.O_CREAT | os.O_RDONLY)
    # Listed, then closed: the race of reading another process's fds. The highest number the
    # limit allows stands for it: descriptors are handed out lowest first, so no other
    # thread of this process can take it meanwhile (a closed low number could be reused).
    gone = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 1
    assert not Path(f"/proc/self/fd/{gone}").exists()
    try:
        assert _ends_of(os.getpid(), [kept, gone]) == {str(tmp_path / "kept")}
    finally:
        os.close(kept)


@sqlite_only
def test_the_service_keeps_no_copy_of_its_childrens_ends(
    running: tuple[dict[str, str], Path],
) -> None:
    """The service hands the API process its end of the metrics channel and of the front's
    hand-over socket, and the front its listener: it closes its own copies, so the channel
    ends when the API process does (it held the metrics end for its whole life; 0093)."""
    env, tmp_path = running
    with Newswatch(["run"], env, tmp_path / "run.log") as nw:
        _base_url(nw)
        wait_for(lambda: _api_pids(nw) and _front_pids(nw), START_SECONDS, "both children")
        [api] = _api_pids(nw)
        cmdline = Path(f"/proc/{api}/cmdline").read_bytes().split(b"\0")
        link = ChildLink.decode(cmdline[cmdline.index(b"--api-child") + 1].decode())
        theirs = {_socket_of(api, fd) for fd in (link.metrics_fd, link.handoff_fd)}
        ours = _ends_of(nw.pid, [int(fd) for fd in os.listdir(f"/proc/{nw.pid}/fd")])
        assert len(theirs) == 2 and not theirs & ours
        nw.signal(signal.SIGTERM)
        assert nw.wait(START_SECONDS) == 0, nw.log_text()


@sqlite_only
def test_liveness_fails_while_ingestions_loop_is_stuck_and_recovers(
    running: tuple[dict[str, str], Path],
) -> None:
    """SIGSTOP freezes the service's process (ingestion's event loop) and nothing else: the
    front's answer and the API process's own /healthz route both turn 503 naming ingestion,
    then 200 again once it runs."""
    env, tmp_path = running
    env = env | {"NEWSWATCH_LIVENESS_MAX_AGE": "2", "NEWSWATCH_API_TOKEN": "secret"}
    with Newswatch(["run"], env, tmp_path / "run.log") as nw:
        base = _base_url(nw)
        auth = {"Authorization": "Bearer secret"}
        with (
            httpx.Client(base_url=base, timeout=30) as probe,
            httpx.Client(base_url=base, timeout=30, headers=auth) as client,
        ):
            wait_for(lambda: probe.get("/healthz").status_code == 200, START_SECONDS, "alive")
            # A connection that carried another request first is served by the API process.
            assert client.get("/api/sources").status_code == 200
            nw.signal(signal.SIGSTOP)
            try:
                wait_for(lambda: probe.get("/healthz").status_code == 503, START_SECONDS, "a 503")
                stuck = probe.get("/healthz").json()
                assert stuck["stuck"] == ["ingestion"], stuck
                from_api = client.get("/healthz")
                assert from_api.status_code == 503 and from_api.json()["stuck"] == ["ingestion"]
            finally:
                nw.signal(signal.SIGCONT)
            wait_for(lambda: probe.get("/healthz").status_code == 200, START_SECONDS, "alive")
            assert client.get("/healthz").json() == {"status": "ok"}


@sqlite_only
def test_sigterm_stops_the_service_and_both_children(
    running: tuple[dict[str, str], Path],
) -> None:
    env, tmp_path = running
    with Newswatch(["run"], env, tmp_path / "run.log") as nw:
        _base_url(nw)
        wait_for(lambda: _api_pids(nw) and _front_pids(nw), START_SECONDS, "both children")
        nw.signal(signal.SIGTERM)
        assert nw.wait(START_SECONDS) == 0, nw.log_text()
        assert not nw.family()  # reaped by the service before it exited


@sqlite_only
def test_the_service_stops_when_its_api_process_dies(
    running: tuple[dict[str, str], Path],
) -> None:
    env, tmp_path = running
    with Newswatch(["run"], env, tmp_path / "run.log") as nw:
        _base_url(nw)
        [api] = _api_pids(nw)
        os.kill(api, signal.SIGKILL)
        assert nw.wait(START_SECONDS) == 1, nw.log_text()
        [fatal] = nw.logged("fatal error")
        assert "the API process exited" in str(fatal["exception"])
        wait_for(lambda: not nw.family(), START_SECONDS, "the probe front to exit")


@sqlite_only
def test_the_service_stops_when_its_probe_front_dies(
    running: tuple[dict[str, str], Path],
) -> None:
    env, tmp_path = running
    with Newswatch(["run"], env, tmp_path / "run.log") as nw:
        _base_url(nw)
        wait_for(lambda: _front_pids(nw), START_SECONDS, "the probe front")
        [front] = _front_pids(nw)
        os.kill(front, signal.SIGKILL)
        assert nw.wait(START_SECONDS) == 1, nw.log_text()
        [fatal] = nw.logged("fatal error")
        assert "the probe front exited" in str(fatal["exception"])
        wait_for(lambda: not nw.family(), START_SECONDS, "the API process to exit")


def test_role_api_alone_reads_only(cli_env: dict[str, str], tmp_path: Path) -> None:
    """On an empty store `run --role api` creates nothing: /readyz says the schema is missing."""
    env = cli_env | {"NEWSWATCH_HTTP_HOST": "127.0.0.1"}
    with Newswatch(["run", "--role", "api"], env, tmp_path / "api.log") as nw:
        base = _base_url(nw)
        with httpx.Client(base_url=base, timeout=30) as http:
            assert http.get("/healthz").status_code == 200
            ready = http.get("/readyz")
            assert ready.status_code == 503
            body = ready.json()
            assert "migrations" in body["failed"] and "scheduler" not in body["checks"]
        nw.signal(signal.SIGTERM)
        assert nw.wait(START_SECONDS) == 0, nw.log_text()
    engine = make_engine(env["DATABASE_URL"])
    try:
        assert current_revision(engine) is None
    finally:
        engine.dispose()


@sqlite_only
def test_the_grouper_runs_alone(cli_env: dict[str, str]) -> None:
    result = newswatch("run", "--role", "group", "--role", "fetch", env=cli_env)
    assert result.returncode == 2
    assert "--role group runs alone" in result.stderr


@sqlite_only
@pytest.mark.parametrize("roles", [["scheduler"], ["fetch"], ["deliver"], ["fetch", "deliver"]])
def test_the_scaled_roles_refuse_an_sqlite_store_saying_why(
    cli_env: dict[str, str], roles: list[str]
) -> None:
    args = [arg for role in roles for arg in ("--role", role)]
    result = newswatch("run", *args, env=cli_env)
    assert result.returncode == 1
    assert f"--role {', '.join(roles)} runs on a Postgres store only" in result.stderr
    assert "DATABASE_URL" in result.stderr
    database = cli_env["DATABASE_URL"].removeprefix("sqlite:///")
    assert not Path(database).exists()  # refused before the store was opened (or created)


@sqlite_only
def test_api_with_another_role_is_refused(cli_env: dict[str, str]) -> None:
    result = newswatch("run", "--role", "api", "--role", "fetch", env=cli_env)
    assert result.returncode == 2
    assert "--role api runs alone" in result.stderr


@sqlite_only
def test_an_unknown_role_is_refused_naming_the_roles(cli_env: dict[str, str]) -> None:
    result = newswatch("run", "--role", "grouper", env=cli_env)
    assert result.returncode == 2
    for role in ("all", "api", "scheduler", "fetch", "group", "deliver"):
        assert role in result.stderr
