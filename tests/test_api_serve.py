"""`newswatch serve` as a user runs it: a real process over an existing store, stopped by
SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from newswatch.api import create_app
from newswatch.api.listening import page_url
from newswatch.config import Settings
from newswatch.store.db import make_engine, upgrade
from tests.api_support import running

NEWSWATCH = str(Path(sys.executable).parent / "newswatch")  # the installed console script


@pytest.fixture
def served(store_url: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    engine = make_engine(store_url)
    upgrade(engine)
    engine.dispose()
    env = dict(os.environ) | {"DATABASE_URL": store_url, "NEWSWATCH_LOG_FORMAT": "json"}
    env.pop("NEWSWATCH_API_TOKEN", None)
    proc = subprocess.Popen(
        [NEWSWATCH, "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        assert proc.stderr is not None
        for line in proc.stderr:  # until the server says where it listens
            if '"http server listening"' in line:
                port = json.loads(line)["port"]
                break
        assert port, "newswatch serve did not start"
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_serve_answers_and_stops_on_sigterm(served: tuple[subprocess.Popen[str], str]) -> None:
    proc, base = served
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready" and "scheduler" not in ready["checks"]
        assert client.get("/api/sources").json() == {"items": []}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert proc.stderr is not None
    assert '"http server stopped"' in proc.stderr.read()


def test_serve_reports_a_port_in_use(store_url: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(os.environ) | {"DATABASE_URL": store_url}
        result = subprocess.run(
            [NEWSWATCH, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"could not start on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize("token", [None, "s3cret"])
def test_the_start_log_names_the_web_page_and_the_token_to_open_it(
    sqlite_engine, token: str | None
) -> None:
    settings = Settings(_env_file=None, NEWSWATCH_API_TOKEN=token)  # type: ignore[call-arg]
    with capture_logs() as logs, running(create_app(sqlite_engine, settings)) as srv:
        pass
    (started,) = [e for e in logs if e["event"] == "http server listening"]
    assert started["web_page"] == f"{srv.base_url}/"
    if token:
        assert f"open {srv.base_url}/?token=<NEWSWATCH_API_TOKEN> once" in started["token"]
        assert token not in str(started)
    else:
        assert "NEWSWATCH_API_TOKEN is not set" in started["token"]


def test_a_wildcard_address_is_shown_as_this_machine() -> None:
    assert page_url("0.0.0.0", 8080) == "http://localhost:8080/"
    assert page_url("::", 8080) == "http://localhost:8080/"
    assert page_url("::1", 80) == "http://[::1]:80/"
    assert page_url("192.0.2.7", 8080) == "http://192.0.2.7:8080/"


RULES_CONFIG = """\
channels:
  - name: ops
    type: webhook
    url: http://127.0.0.1:9/hook
rules:
  - name: quakes
    query: earthquake
    channels: [ops]
    min_sources: 2
"""


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """`newswatch ARGS` as a child process; returns it with its base URL once it listens."""
    proc = subprocess.Popen([NEWSWATCH, *args], env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # until the server says where it listens
        if '"http server listening"' in line:
            return proc, f"http://127.0.0.1:{json.loads(line)['port']}"
    proc.wait(10)
    raise AssertionError(f"newswatch {' '.join(args)} did not start")


@pytest.mark.parametrize("command", [["run"], ["serve", "--host", "127.0.0.1", "--port", "0"]])
def test_rules_and_rule_feeds_under_run_and_serve(
    store_url: str, tmp_path: Path, command: list[str]
) -> None:
    """Both commands serve the rules of the same config file (issue 14, item 2: `run` built
    the API without the config, so /api/rules was empty and rule feeds 404ed)."""
    config = tmp_path / "newswatch.yaml"
    config.write_text(RULES_CONFIG)
    engine = make_engine(store_url)
    upgrade(engine)
    engine.dispose()
    env = dict(os.environ) | {
        "DATABASE_URL": store_url,
        "NEWSWATCH_CONFIG": str(config),
        "NEWSWATCH_LOG_FORMAT": "json",
        "NEWSWATCH_HTTP_HOST": "127.0.0.1",
        "NEWSWATCH_HTTP_PORT": "0",
    }
    env.pop("NEWSWATCH_API_TOKEN", None)
    proc, base = _start(command, env)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            rules = client.get("/api/rules").json()["items"]
            assert [(r["name"], r["query"], r["channels"]) for r in rules] == [
                ("quakes", "earthquake", ["ops"])
            ]
            assert rules[0]["options"] == {"min_sources": 2}
            feed = client.get("/feeds/rules/quakes.atom")
            assert feed.status_code == 200, feed.text
            assert "newswatch alerts: quakes" in feed.text
            assert client.get("/feeds/rules/nobody.atom").status_code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
