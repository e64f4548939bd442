"""Configuration: environment settings and the YAML file, with errors that name the place."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner

from newswatch.cli import main
from newswatch.config import ConfigError, Settings, expand_env, load_config, parse_config_text
from newswatch.durations import parse_duration

GOOD = """
sources:
  - name: bbc-world
    url: https://feeds.bbci.co.uk/news/world/rss.xml
    interval: 10m
  - name: cron-one
    url: https://example.org/feed
    cron: "*/15 * * * *"
"""

BAD = """
sources:
  - name: ok
    url: https://example.org/a
  - name: no-url
  - name: bad-interval
    url: https://example.org/b
    interval: soon
  - name: both
    url: ftp://example.org/c
    interval: 10m
    cron: "* * *"
"""


def test_good_config_parses():
    config = parse_config_text(GOOD)
    assert [s.name for s in config.sources] == ["bbc-world", "cron-one"]
    assert config.sources[0].interval == timedelta(minutes=10)
    assert config.sources[1].cron == "*/15 * * * *"


def test_every_error_is_reported_with_path_and_line():
    with pytest.raises(ConfigError) as info:
        parse_config_text(BAD, "cfg.yaml")
    paths = {p.path for p in info.value.problems}
    assert "sources[1].url" in paths
    assert "sources[2].interval" in paths
    assert "sources[3].url" in paths
    assert "sources[3].cron" in paths
    by_path = {p.path: p for p in info.value.problems}
    assert by_path["sources[2].interval"].line == 8
    assert "cfg.yaml" in str(info.value)


def test_duplicate_names_and_unknown_keys():
    text = """
sources:
  - {name: a, url: "https://x.org/1"}
  - {name: a, url: "https://x.org/2", colour: red}
"""
    with pytest.raises(ConfigError) as info:
        parse_config_text(text)
    messages = str(info.value)
    assert "sources[1].colour" in messages


def test_yaml_syntax_error_names_line_and_column():
    with pytest.raises(ConfigError) as info:
        parse_config_text("sources:\n  - name: a\n    url: [unclosed\n")
    problem = info.value.problems[-1]
    assert problem.path == "(yaml)" and problem.line is not None and "col" in problem.message


def test_env_expansion(monkeypatch):
    monkeypatch.setenv("FEED_HOST", "example.org")
    text, missing = expand_env("u: https://${FEED_HOST}/x ${NOPE:-dflt} ${ABSENT}")
    assert text == "u: https://example.org/x dflt "
    assert missing == ["ABSENT"]
    with pytest.raises(ConfigError) as info:
        parse_config_text(
            "sources:\n  - name: a\n    url: https://${ABSENT_VAR}/x\n# ${IN_COMMENT}\n"
        )
    first = info.value.problems[0]
    assert (first.path, first.line) == ("sources[0].url", 3) and "ABSENT_VAR" in first.message
    assert "ABSENT_VAR" in str(info.value) and "IN_COMMENT" not in str(info.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value)


def test_check_config_command(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    runner = CliRunner()
    ok = runner.invoke(main, ["check-config", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "2 sources" in ok.output
    failed = runner.invoke(main, ["check-config", str(bad)])
    assert failed.exit_code == 1
    assert "sources[2].interval" in failed.output


def test_example_config_is_valid():
    from pathlib import Path

    config = load_config(Path(__file__).parents[1] / "deploy" / "newswatch.example.yaml")
    assert config.sources


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "sqlite:///x.db")
    monkeypatch.setenv("NEWSWATCH_HTTP_PER_HOST_CONCURRENCY", "3")
    monkeypatch.setenv("NEWSWATCH_CONTACT_URL", "https://ops.example.org")
    s = Settings()
    assert s.database_url == "sqlite:///x.db"
    assert s.http_per_host_concurrency == 3
    assert "https://ops.example.org" in s.user_agent and "newswatch/" in s.user_agent


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("1h30m", 5400), ("2d", 172800), ("45", 45), (30, 30)],
)
def test_durations(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["soon", "10x", "m10", "", "1h junk"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_public_url_is_an_http_base_without_a_trailing_slash(monkeypatch):
    monkeypatch.setenv("NEWSWATCH_PUBLIC_URL", "https://news.example.org/watch/")
    assert Settings(_env_file=None).public_url == "https://news.example.org/watch"
    monkeypatch.delenv("NEWSWATCH_PUBLIC_URL")
    assert Settings(_env_file=None).public_url is None
    for bad in ("news.example.org", "ftp://news.example.org", "https://"):
        monkeypatch.setenv("NEWSWATCH_PUBLIC_URL", bad)
        with pytest.raises(ValueError, match="NEWSWATCH_PUBLIC_URL"):
            Settings(_env_file=None)


def test_named_api_tokens(monkeypatch):
    monkeypatch.setenv("NEWSWATCH_API_TOKENS", " alice:tok-a:with-colon , bob:tok-b,")
    monkeypatch.setenv("NEWSWATCH_API_TOKEN", "shared")
    s = Settings(_env_file=None)
    assert s.named_tokens == {"alice": "tok-a:with-colon", "bob": "tok-b"}
    assert s.token_holders == {"tok-a:with-colon": "alice", "tok-b": "bob", "shared": None}
    monkeypatch.delenv("NEWSWATCH_API_TOKENS")
    assert Settings(_env_file=None).token_holders == {"shared": None}
    monkeypatch.delenv("NEWSWATCH_API_TOKEN")
    assert Settings(_env_file=None).token_holders == {}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("alice", "entry 1: expected NAME:TOKEN"),
        ("alice:secret-1,bob:", "entry 2: expected NAME:TOKEN"),
        ("al ice:secret-1", "entry 1: the name must be"),
        (":secret-1", "entry 1: the name must be"),
        ("a:secret-1,a:secret-2", "entry 2: the name 'a' is given twice"),
        ("a:secret-1,b:secret-1", "entry 2: 'b' has the same token as another name"),
    ],
)
def test_bad_named_api_tokens_are_refused_without_showing_a_token(monkeypatch, value, problem):
    monkeypatch.setenv("NEWSWATCH_API_TOKENS", value)
    with pytest.raises(ValueError, match=f"NEWSWATCH_API_TOKENS {problem}") as raised:
        Settings(_env_file=None)
    assert "secret" not in str(raised.value)


def test_the_shared_token_cannot_also_be_a_named_one(monkeypatch):
    monkeypatch.setenv("NEWSWATCH_API_TOKENS", "alice:secret-1")
    monkeypatch.setenv("NEWSWATCH_API_TOKEN", "secret-1")
    with pytest.raises(ValueError, match="NEWSWATCH_API_TOKEN is also one of") as raised:
        Settings(_env_file=None)
    assert "secret" not in str(raised.value)
