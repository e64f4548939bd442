"""`newswatch rules` and `newswatch silence` as a user runs them, on SQLite and Postgres."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli_support import newswatch
from tests.test_replay import STREAM

CONFIG = """
channels:
  - name: ops
    type: webhook
    url: http://127.0.0.1:9/hook
rules:
  - name: summit
    query: '(Belousov OR "defence minister") AND (DPRK OR "North Korea" OR Pyongyang)'
    min_sources: 2
    window: 24h
    channels: [ops]
  - name: quake
    query: 'title:earthquake OR quake*'
    min_sources: 5
    channels: [ops]
"""


def env_with_config(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "rules.yaml"
    path.write_text(CONFIG)
    return {**cli_env, "NEWSWATCH_CONFIG": str(path)}


def test_rules_list_and_dry_run(cli_env, tmp_path):
    env = env_with_config(cli_env, tmp_path)
    listed = newswatch("rules", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("summit: (Belousov")
    assert "min_sources 2" in lines[0] and "channels ops" in lines[0]

    # History stored without alerts; the dry run says what would have fired and why.
    assert newswatch("replay", str(STREAM), "--no-alerts", env=env).returncode == 1
    dry = newswatch("rules", "test", "summit", "--since", "2026-11-19", env=env)
    assert dry.returncode == 0, dry.stderr
    assert re.search(r"^event \d+: Belousov meets North Korean", dry.stdout, re.M), dry.stdout
    assert "3 sources within 24h (needs 2); matched" in dry.stdout and "belousov" in dry.stdout
    assert "1 events would have fired" in dry.stderr

    # The quake has 4 sources: below its rule's 5, and news before --since does not count.
    assert newswatch("rules", "test", "quake", "--json", env=env).stdout == ""
    loose = newswatch(
        "rules", "test", "--query", "title:earthquake OR quake*", "--since", "2026-11-19",
        "--json", env=env,
    )  # fmt: skip
    (fired,) = [json.loads(line) for line in loose.stdout.splitlines()]
    assert fired["sources"] == 4 and "quake*" in fired["terms"]
    later = newswatch(
        "rules", "test", "--query", "quake*", "--since", "2026-11-21", "--json", env=env
    )
    assert later.returncode == 0 and later.stdout == ""

    # Nothing was queued by any of it.
    assert newswatch("deliveries", "list", env=env).stdout.strip() == ""


def test_rules_test_errors(cli_env, tmp_path):
    env = env_with_config(cli_env, tmp_path)
    missing = newswatch("rules", "test", "nope", env=env)
    assert missing.returncode == 1 and "no rule named 'nope'" in missing.stderr
    both = newswatch("rules", "test", "summit", "--query", "x", env=env)
    assert both.returncode == 2 and "not both" in both.stderr
    bad = newswatch("rules", "test", "--query", "belousov AND (dprk", env=env)
    assert bad.returncode == 2 and 'col 14: unmatched "("' in bad.stderr
    since = newswatch("rules", "test", "summit", "--since", "last week", env=env)
    assert since.returncode == 2 and "neither an age" in since.stderr


def test_silence_add_list_remove(cli_env, tmp_path):
    env = env_with_config(cli_env, tmp_path)
    added = newswatch("silence", "add", "--rule", "summit", "--for", "8h", "--reason", "drill",
                      env=env)  # fmt: skip
    assert added.returncode == 0, added.stderr
    match = re.match(r"silence (\d+): summit until \d{4}-\d\d-\d\d \d\d:\d\d UTC", added.stdout)
    assert match, added.stdout
    every = newswatch("silence", "add", "--for", "30m", env=env)
    assert every.returncode == 0 and "all rules" in every.stdout

    listed = newswatch("silence", "list", env=env).stdout.splitlines()
    assert len(listed) == 2
    assert any(
        line.startswith(f"{match[1]}: summit until") and "(drill)" in line for line in listed
    )

    removed = newswatch("silence", "remove", match[1], env=env)
    assert removed.returncode == 0 and f"silence {match[1]} removed" in removed.stdout
    assert len(newswatch("silence", "list", env=env).stdout.splitlines()) == 1
    again = newswatch("silence", "remove", match[1], env=env)
    assert again.returncode == 1 and f"no silence with id {match[1]}" in again.stderr

    bad = newswatch("silence", "add", "--rule", "summit", "--for", "soon", env=env)
    assert bad.returncode == 2 and "--for" in bad.stderr
    unknown = newswatch("silence", "add", "--rule", "nope", "--for", "1h", env=env)
    assert unknown.returncode == 1 and "no rule named 'nope'" in unknown.stderr
