"""With NEWSWATCH_API_PROCESS set, `newswatch run` serves its API from a process of its own
(`run --role api`): real processes
on 127.0.0.1. The API process reports the scheduler's state (/readyz) and the service's
metrics (/metrics), dies with the service even after SIGKILL, and takes the service down
when it dies itself. `--role api` alone reads only; the roles to come are refused."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

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


def _api_pids(nw: Newswatch) -> list[int]:
    pids = []
    for pid in marked(nw.marker):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"--api-child" in cmdline:
            pids.append(pid)
    return pids


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
        "NEWSWATCH_API_PROCESS": "true",
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
        assert nw.logged("api process stopped")


@sqlite_only
def test_by_default_run_serves_the_api_from_its_own_process(
    running: tuple[dict[str, str], Path],
) -> None:
    """Without NEWSWATCH_API_PROCESS the API is served by the service itself (decision 0083's
    measurement on 2 cores): no child process, /readyz still sees the scheduler."""
    env, tmp_path = running
    env = {k: v for k, v in env.items() if k != "NEWSWATCH_API_PROCESS"}
    with Newswatch(["run"], env, tmp_path / "run.log") as nw:
        base = _base_url(nw)
        assert _api_pids(nw) == []
        with httpx.Client(base_url=base, timeout=30) as http:
            ready = http.get("/readyz").json()
        assert ready["checks"]["scheduler"]["running"] is True, ready


@sqlite_only
def test_the_api_process_dies_with_the_service(running: tuple[dict[str, str], Path]) -> None:
    env, tmp_path = running
    with Newswatch(["run"], env, tmp_path / "run.log") as nw:
        _base_url(nw)
        assert _api_pids(nw)
        nw.signal(signal.SIGKILL)
        nw.wait(START_SECONDS)
        wait_for(lambda: not nw.family(), START_SECONDS, "the API process to exit")


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
