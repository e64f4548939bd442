"""A store that cannot be opened at start (issue 20, item 4): one line naming the URL,
without its password, and the cause; no traceback. Real child processes, a real closed port
on 127.0.0.1 and a real Postgres server when one is configured."""

from __future__ import annotations

import os

import pytest

from tests.cli_support import newswatch_process as newswatch  # what the user sees: a process
from tests.conftest import PG_URL


def _env(url: str) -> dict[str, str]:
    env = dict(os.environ, DATABASE_URL=url, NEWSWATCH_LOG_FORMAT="json")
    env.pop("NEWSWATCH_CONFIG", None)
    return env


@pytest.mark.parametrize(
    ("url", "named", "cause"),
    [
        # Port 1 on 127.0.0.1: nothing listens there.
        ("postgresql://bob:s3cret@127.0.0.1:1/news", "127.0.0.1:1/news", "refused"),
        ("mysql2://bob:s3cret@127.0.0.1/news", "mysql2://", "mysql2"),
        ("not a url", "not a url", "not a database URL"),
        ("sqlite:////proc/no/such/dir/news.db", "/proc/no/such/dir/news.db", "No such file"),
    ],
)
def test_a_store_that_cannot_be_opened_is_one_line(url, named, cause):
    # `db upgrade` opens the store without migrating first: the same line.
    commands = [("sources", "list")] + [("db", "upgrade")] * url.startswith("postgresql")
    for command in commands:
        result = newswatch(*command, env=_env(url))
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "cannot open the store" in lines[0]
        assert named in lines[0] and cause in lines[0]
        assert "s3cret" not in lines[0]


def test_a_missing_postgres_database_is_one_line():
    if not PG_URL:
        pytest.skip("NEWSWATCH_TEST_DATABASE_URL not set")
    url = PG_URL.rsplit("/", 1)[0] + "/no_such_database_here"
    result = newswatch("sources", "list", env=_env(url))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no_such_database_here" in lines[0] and "does not exist" in lines[0]
