"""A source whose address answers 410 Gone (issue 20): after NEWSWATCH_GONE_PAUSE_AFTER such
answers in a row it is paused — not polled — with its reason in `sources list`, the API and
the sources page, until `newswatch sources resume` or an edit of its config entry. Real
`newswatch` commands against a real HTTP server on 127.0.0.1, SQLite and Postgres."""

from __future__ import annotations

import json
from pathlib import Path

from newswatch.api.app import create_app
from newswatch.config import Settings
from newswatch.store.db import make_engine
from tests.api_support import running
from tests.cli_support import newswatch
from tests.localserver import LocalServer, static

FEED = (Path(__file__).parent / "fixtures" / "poll" / "guardian.rss").read_bytes()
PAUSE_AFTER = 2


def _config(tmp_path: Path, server: LocalServer, path: str = "/gone") -> Path:
    config = tmp_path / "newswatch.yaml"
    config.write_text(
        "sources:\n"
        f"  - name: gone\n    url: {server.url(path)}\n    interval: 10m\n"
        f"  - name: fine\n    url: {server.url('/fine')}\n    interval: 10m\n"
    )
    return config


def _listed(env: dict[str, str]) -> dict[str, dict[str, object]]:
    done = newswatch("sources", "list", "--json", env=env)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    return {str(row["name"]): row for row in rows}


def _run_once(env: dict[str, str]) -> None:
    done = newswatch("run", "--once", env=env)
    assert done.returncode == 0, done.stderr


def _gone_server(server: LocalServer) -> None:
    server.routes["/gone"] = static("gone for good", status=410, content_type="text/plain")
    server.routes["/fine"] = static(FEED)
    server.routes["/moved"] = static(FEED.replace(b"theguardian.com", b"moved.example"))


def test_a_source_gone_is_paused_after_n_polls_and_resumed_by_the_cli(
    cli_env: dict[str, str], server: LocalServer, tmp_path: Path
) -> None:
    _gone_server(server)
    env = cli_env | {
        "NEWSWATCH_CONFIG": str(_config(tmp_path, server)),
        "NEWSWATCH_GONE_PAUSE_AFTER": str(PAUSE_AFTER),
    }
    _run_once(env)
    assert _listed(env)["gone"]["paused_reason"] is None  # one 410 may be a mistake
    _run_once(env)
    paused = _listed(env)["gone"]
    assert "410 Gone 2 times in a row" in str(paused["paused_reason"])
    assert "newswatch sources resume gone" in str(paused["paused_reason"])

    _run_once(env)  # paused: not asked again; the other source still is
    assert len(server.hits("/gone")) == PAUSE_AFTER
    assert len(server.hits("/fine")) == 3

    table = newswatch("sources", "list", env=env).stdout
    gone_line = next(line for line in table.splitlines() if line.startswith("gone "))
    assert " paused " in gone_line and "  paused: 410 Gone 2 times in a row" in table

    engine = make_engine(env["DATABASE_URL"])
    try:
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        with running(create_app(engine, settings)) as api:
            by_name = {s["name"]: s for s in api.get("/api/sources").json()["items"]}
            assert "410 Gone" in by_name["gone"]["paused_reason"]
            assert by_name["fine"]["paused_reason"] is None
            assert "paused: 410 Gone" in api.get("/sources").text
    finally:
        engine.dispose()

    resumed = newswatch("sources", "resume", "gone", env=env)
    assert resumed.returncode == 0 and "resumed source gone" in resumed.stdout
    assert _listed(env)["gone"]["paused_reason"] is None
    _run_once(env)
    assert len(server.hits("/gone")) == PAUSE_AFTER + 1  # polled again (and counting anew)
    assert _listed(env)["gone"]["paused_reason"] is None


def test_editing_a_paused_source_in_the_config_resumes_it(
    cli_env: dict[str, str], server: LocalServer, tmp_path: Path
) -> None:
    _gone_server(server)
    env = cli_env | {
        "NEWSWATCH_CONFIG": str(_config(tmp_path, server)),
        "NEWSWATCH_GONE_PAUSE_AFTER": "1",
    }
    _run_once(env)
    assert _listed(env)["gone"]["paused_reason"]
    _run_once(env)  # the config unchanged: still paused
    assert len(server.hits("/gone")) == 1 and _listed(env)["gone"]["paused_reason"]

    _config(tmp_path, server, path="/moved")  # the operator fixes the URL
    _run_once(env)
    gone = _listed(env)["gone"]
    assert gone["paused_reason"] is None and gone["last_status"] == 200
    assert len(server.hits("/moved")) == 1


def test_a_setting_of_zero_never_pauses(
    cli_env: dict[str, str], server: LocalServer, tmp_path: Path
) -> None:
    _gone_server(server)
    env = cli_env | {
        "NEWSWATCH_CONFIG": str(_config(tmp_path, server)),
        "NEWSWATCH_GONE_PAUSE_AFTER": "0",
    }
    for _ in range(3):
        _run_once(env)
    assert len(server.hits("/gone")) == 3
    assert _listed(env)["gone"]["paused_reason"] is None


def test_resume_names_a_source_that_is_not_paused_or_missing(
    cli_env: dict[str, str], server: LocalServer, tmp_path: Path
) -> None:
    _gone_server(server)
    env = cli_env | {"NEWSWATCH_CONFIG": str(_config(tmp_path, server))}
    _run_once(env)
    not_paused = newswatch("sources", "resume", "fine", env=env)
    assert not_paused.returncode == 0 and "is not paused" in not_paused.stderr
    missing = newswatch("sources", "resume", "nope", env=env)
    assert missing.returncode != 0 and "nope" in missing.stderr
