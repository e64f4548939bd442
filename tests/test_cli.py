"""The `newswatch` command as a user runs it, with a local feed server and a store: in this
process where the command is tested, as a real process where the process is the point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aiohttp import web

from newswatch.store.db import session_scope
from newswatch.store.models import Article
from tests.api_support import add_articles, hours_ago
from tests.cli_support import newswatch, newswatch_process
from tests.localserver import LocalServer, conditional, static

FIXTURES = Path(__file__).parent / "fixtures" / "poll"
GUARDIAN = (FIXTURES / "guardian.rss").read_bytes()


def write_config(tmp_path: Path, server, extra: str = "") -> Path:
    path = tmp_path / "newswatch.yaml"
    path.write_text(
        f"sources:\n  - name: guardian\n    url: {server.url('/guardian')}\n    interval: 10m\n"
        + extra
    )
    return path


def test_run_once_then_articles_list(cli_env, server, tmp_path):
    server.routes["/guardian"] = conditional(GUARDIAN, etag='"x"')
    cli_env["NEWSWATCH_CONFIG"] = str(write_config(tmp_path, server))
    first = newswatch("run", "--once", env=cli_env)
    assert first.returncode == 0, first.stderr
    # One structured log line per fetch, with what operators need.
    fetch_logs = [
        json.loads(line)
        for line in first.stderr.splitlines()
        if line.startswith("{") and '"fetch"' in line
    ]
    assert fetch_logs and {
        "source",
        "url",
        "status",
        "bytes",
        "duration_ms",
        "new_articles",
    } <= set(fetch_logs[0])
    assert fetch_logs[0]["new_articles"] > 0

    second = newswatch("run", "--once", env=cli_env)
    assert second.returncode == 0, second.stderr
    assert server.hits("/guardian")[-1].headers.get("If-None-Match") == '"x"'

    listed = newswatch("articles", "list", "--json", "--limit", "1000", env=cli_env)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) == fetch_logs[0]["new_articles"]
    assert all(r["sources"] == ["guardian"] for r in rows)
    assert len({r["canonical_url"] for r in rows}) == len(rows)

    by_source = newswatch("articles", "list", "--json", "--source", "nobody", env=cli_env)
    assert by_source.stdout == ""
    bad_since = newswatch("articles", "list", "--since", "yesterday-ish", env=cli_env)
    assert bad_since.returncode == 2 and "--since" in bad_since.stderr


def test_sources_add_list_remove(cli_env, server):
    server.routes["/f"] = static("oops", status=500)
    added = newswatch("sources", "add", "broken", server.url("/f"), "--interval", "5m", env=cli_env)
    assert added.returncode == 0, added.stderr
    dup = newswatch("sources", "add", "broken", server.url("/f"), env=cli_env)
    assert dup.returncode == 1 and "exists" in dup.stderr
    bad = newswatch("sources", "add", "x", "ftp://nope", env=cli_env)
    assert bad.returncode == 2 and "url" in bad.stderr
    newswatch("run", "--once", env=cli_env)
    listed = newswatch("sources", "list", "--json", env=cli_env)
    row = json.loads(listed.stdout.splitlines()[0])
    assert (row["name"], row["last_status"], row["consecutive_errors"]) == ("broken", 500, 1)
    assert "HTTP 500" in row["last_error"]
    table = newswatch("sources", "list", env=cli_env)
    assert "broken" in table.stdout and "HTTP 500" in table.stdout
    removed = newswatch("sources", "remove", "broken", env=cli_env)
    assert removed.returncode == 0
    listed = newswatch("sources", "list", "--json", env=cli_env)
    assert json.loads(listed.stdout)["enabled"] is False


def test_db_upgrade_and_check_config(cli_env, tmp_path):
    upgraded = newswatch("db", "upgrade", env=cli_env)
    assert upgraded.returncode == 0 and "schema at" in upgraded.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - name: a\n    url: https://x.org\n    interval: 1x\n")
    checked = newswatch("check-config", str(bad), env=cli_env)
    assert checked.returncode == 1 and "sources[0].interval" in checked.stderr


def test_sigterm_finishes_in_flight_fetch_and_exits(cli_env, server, tmp_path):
    state = {"started": 0, "finished": 0}

    async def slow(request: web.Request) -> web.StreamResponse:
        import asyncio

        state["started"] += 1
        await asyncio.sleep(2)
        state["finished"] += 1
        return web.Response(body=GUARDIAN, content_type="application/rss+xml")

    server.routes["/guardian"] = slow
    cli_env["NEWSWATCH_CONFIG"] = str(write_config(tmp_path, server, "    jitter: 0s\n"))
    # New sources start within a minute, spread out; make it immediate for the test.
    cli_env["NEWSWATCH_FIRST_RUN_SPREAD"] = "0"
    proc = subprocess.Popen(
        [sys.executable, "-m", "newswatch", "run"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while state["started"] == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert state["started"] == 1, "the source was not polled"
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert state["finished"] == 1
    assert '"service stopped"' in err
    fetch_lines = [json.loads(line) for line in err.splitlines() if '"event": "fetch"' in line]
    assert fetch_lines and fetch_lines[0]["new_articles"] > 0


def test_the_installed_command_exits_with_its_status(tmp_path):
    """The console script a user runs: 0 on success, 1 for a bad config, 2 for bad usage."""
    cli_env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'newswatch.db'}"}
    command = str(Path(sys.executable).parent / "newswatch")
    version = subprocess.run([command, "--version"], env=cli_env, capture_output=True, text=True)
    assert version.returncode == 0 and "newswatch, version" in version.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - name: a\n    url: https://x.org\n    interval: 1x\n")
    checked = newswatch_process("check-config", str(bad), env=cli_env)
    assert checked.returncode == 1 and "sources[0].interval" in checked.stderr
    usage = subprocess.run(
        [command, "articles", "list", "--since", "yesterday-ish"],
        env=cli_env,
        capture_output=True,
        text=True,
    )
    assert usage.returncode == 2 and "--since" in usage.stderr


HEAVY_MODULES = ["sqlalchemy", "sqlmodel", "pydantic", "fastapi", "numpy", "trafilatura"]


def test_the_command_line_loads_a_commands_dependencies_only_when_it_runs():
    """`newswatch --help` (and importing newswatch.cli) imports none of the application's heavy
    libraries; a command's own help loads what that command needs."""
    probe = (
        "import sys\n"
        "from newswatch.cli import main\n"
        "for args in (['--help'], ['--version'], ['articles', '--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *HEAVY_MODULES], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    loaded = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert loaded[:2] == ["[]", "[]"]
    assert "sqlalchemy" in loaded[2]  # articles reads the store


def test_the_command_list_matches_the_commands_modules():
    """`newswatch --help` lists the commands from a table; each module registers exactly the
    commands the table gives it, with the same one-line help."""
    import click

    from newswatch.cli import COMMANDS, load_module

    for module in {m for m, _ in COMMANDS.values()}:
        group = click.Group()
        load_module(module).register(group)
        listed = {name for name, (m, _) in COMMANDS.items() if m == module}
        assert set(group.commands) == listed, module
        for name, command in group.commands.items():
            want = click.Command(name, help=COMMANDS[name][1]).get_short_help_str(1000)
            assert command.get_short_help_str(1000) == want, name


def test_articles_list_names_its_clocks_and_since_chooses_one(engine, cli_env):
    """Old news found late, a report seen when published, one without a date: --since works
    on the first-seen time unless --by published says otherwise."""
    (late,) = add_articles(engine, "wire", ["Old news found late"], hours_ago(0.5))
    (prompt,) = add_articles(engine, "wire", ["Seen when published"], hours_ago(2))
    (undated,) = add_articles(engine, "wire", ["No date given"], hours_ago(0.25))
    with session_scope(engine) as session:
        session.get(Article, late).published = hours_ago(48)  # type: ignore[union-attr]
        session.get(Article, undated).published = None  # type: ignore[union-attr]

    def ids(*args: str) -> list[int]:
        listed = newswatch("articles", "list", "--json", *args, env=cli_env)
        assert listed.returncode == 0, listed.stderr
        return [json.loads(line)["id"] for line in listed.stdout.splitlines()]

    assert ids("--since", "1h") == [undated, late]
    assert ids("--since", "1h", "--by", "seen") == [undated, late]
    assert ids("--since", "1h", "--by", "published") == [undated]
    assert ids("--since", "3h", "--by", "published") == [undated, prompt]
    table = newswatch("articles", "list", env=cli_env).stdout.splitlines()
    assert table[0].split() == ["id", "published", "first", "seen", "lang", "[sources]", "title"]
    undated_row = next(line for line in table if line.startswith(f"{undated:>7}"))
    assert undated_row.split()[1] == "-"
    bad = newswatch("articles", "list", "--by", "fetched", env=cli_env)
    assert bad.returncode == 2 and "--by" in bad.stderr


# What a `run --once` whose feeds are all unchanged never needs: migrations on a current
# store, feed parsing, page extraction, language detection, grouping, the API, and the
# scheduler (`run` alone schedules; a config validates cron expressions with it only when a
# source has one).
UNNEEDED_FOR_UNCHANGED = [
    "alembic",
    "apscheduler",
    "feedparser",
    "lxml",
    "trafilatura",
    "courlan",
    "fasttext",
    "numpy",
    "fastapi",
]


def test_run_once_over_unchanged_feeds_loads_no_parser_migrations_or_grouping(
    cli_env: dict[str, str], server: LocalServer, tmp_path: Path
) -> None:
    async def not_modified(_request: web.Request) -> web.Response:
        return web.Response(status=304)

    server.routes["/feed"] = not_modified
    config = tmp_path / "newswatch.yaml"
    config.write_text(
        f"sources:\n  - name: a\n    url: {server.url('/feed')}\ngrouping:\n  enabled: true\n",
        encoding="utf-8",
    )
    env = {**cli_env, "NEWSWATCH_CONFIG": str(config)}
    first = newswatch("run", "--once", env=env)  # migrates the empty store
    assert first.returncode == 0, first.stderr
    probe = (
        "import sys\n"
        "from newswatch.cli import main\n"
        "try:\n"
        "    main(['run', '--once'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *UNNEEDED_FOR_UNCHANGED],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "1 sources polled, 0 new articles, 0 with errors" in done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert len(server.hits("/feed")) == 2


def test_start_up_is_frozen_and_polling_collects_the_young_less_often() -> None:
    import gc

    from newswatch.lifecycle import (
        YOUNG_COLLECTION_ALLOCATIONS,
        long_lived_start,
        polling_collections,
    )

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    try:
        with long_lived_start():
            assert not gc.isenabled()
            made = [[i] for i in range(1000)]  # containers the collector tracks
        assert gc.isenabled() and gc.get_freeze_count() >= frozen + len(made)
        with polling_collections():
            assert gc.get_threshold() == (YOUNG_COLLECTION_ALLOCATIONS, *before[1:])
        assert gc.get_threshold() == before  # a command run in-process leaves it as it was
    finally:
        gc.unfreeze()
