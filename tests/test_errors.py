"""One exception hierarchy (newswatch/errors.py), and the CLI reporting it in one line."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from sqlalchemy import Engine

from newswatch import errors
from newswatch.alerts.query import QueryError
from newswatch.alerts.query import parse as parse_query
from newswatch.api.errors import bad_parameter
from newswatch.cli.common import reported_errors
from newswatch.config import ConfigError, load_config
from newswatch.replay import LineError, parse_line
from newswatch.store.db import StoreUnavailable, open_store, session_scope
from newswatch.store.outbox import RetryError, retry_delivery
from tests.cli_support import newswatch


def test_an_error_says_where_and_what() -> None:
    error = errors.FetchError("timed out after 5 s", where="https://example.org/feed")
    assert str(error) == "https://example.org/feed: timed out after 5 s"
    assert (error.where, error.message) == ("https://example.org/feed", "timed out after 5 s")
    assert str(errors.StoreError("disk full")) == "disk full"


def test_a_bad_replay_line_is_an_input_error_at_its_file_and_line() -> None:
    with pytest.raises(LineError) as caught:
        parse_line("stream.jsonl", 7, "{not json")
    error = caught.value
    assert isinstance(error, errors.InputError) and isinstance(error, ValueError)
    assert error.where == "stream.jsonl:7"
    assert str(error).startswith("stream.jsonl:7: col 2: not JSON")


def test_a_store_that_cannot_be_opened_is_a_store_error() -> None:
    url = "postgresql://bob:s3cret@127.0.0.1:1/news"  # nothing listens on port 1
    with pytest.raises(StoreUnavailable) as caught:
        open_store(url)
    assert isinstance(caught.value, errors.StoreError)
    assert caught.value.where == "cannot open the store postgresql://bob:***@127.0.0.1:1/news"
    assert str(caught.value).startswith(f"{caught.value.where}: ")
    assert "\n" not in str(caught.value) and "s3cret" not in str(caught.value)


def test_a_bad_config_file_is_a_config_error_listing_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("sources:\n  - name: a\n  - url: http://example.org/\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    error = caught.value
    assert isinstance(error, errors.ConfigError) and isinstance(error, errors.NewswatchError)
    assert error.where == str(path)
    assert str(error).splitlines()[0] == f"{path}: {len(error.problems)} problem(s)"
    assert len(str(error).splitlines()) == 1 + len(error.problems) >= 3


def test_the_cli_reports_an_error_in_one_line_and_a_config_file_in_full() -> None:
    with pytest.raises(click.ClickException) as caught, reported_errors():
        raise errors.StoreError("refused\nsecond line of a driver's message", where="articles")
    assert caught.value.message == "articles: refused"
    problems = "config.yaml: 2 problem(s)\n  a: bad\n  b: bad"
    with pytest.raises(click.ClickException) as caught, reported_errors():
        raise errors.ConfigError("2 problem(s)\n  a: bad\n  b: bad", where="config.yaml")
    assert caught.value.message == problems
    with pytest.raises(KeyError), reported_errors():  # not ours: a bug, with its traceback
        raise KeyError("x")


def test_a_command_prints_a_newswatch_error_as_one_line(store_url: str) -> None:
    result = newswatch("sources", "remove", "nowhere", env={"DATABASE_URL": store_url})
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: no source named 'nowhere'"


def test_a_query_that_does_not_parse_is_an_input_error_at_its_column() -> None:
    with pytest.raises(QueryError) as caught:
        parse_query('"unclosed')
    error = caught.value
    assert isinstance(error, errors.InputError) and isinstance(error, ValueError)
    assert (error.column, error.where) == (1, "col 1")
    assert str(error) == f"col 1: {error.message}"
    assert error.message == 'unmatched """'


def test_retrying_a_missing_notification_is_an_input_error(engine: Engine) -> None:
    with session_scope(engine) as session, pytest.raises(RetryError) as caught:
        retry_delivery(session, 424242)
    assert isinstance(caught.value, errors.InputError) and isinstance(caught.value, ValueError)
    assert str(caught.value) == "no notification with id 424242"


def test_an_api_error_is_a_newswatch_error_with_its_message_unchanged() -> None:
    error = bad_parameter("limit", "at most 500")
    assert isinstance(error, errors.NewswatchError)
    assert (error.status, error.parameter, error.where) == (400, "limit", None)
    assert str(error) == error.message == "limit: at most 500"
