"""Shared fixtures: a store on SQLite and (when NEWSWATCH_TEST_DATABASE_URL is set) Postgres.

Each Postgres test gets a schema of its own, so test runs never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import Engine, create_engine, text

from newswatch.store.db import make_engine, normalise_url, upgrade
from tests.localserver import LocalServer

PG_URL = os.environ.get("NEWSWATCH_TEST_DATABASE_URL")


# The shared corpora: $NEWSWATCH_SHARED_DATA, else ../shared/data beside the checkout.
SHARED_DATA = Path(
    os.environ.get("NEWSWATCH_SHARED_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)


def skip_or_fail(message: str) -> NoReturn:
    """Skip a test whose outside requirement is missing; in CI (`CI` set), fail it: CI runs
    every test."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def shared_corpus(path: Path) -> Path:
    """`path`, a file or folder of the shared corpora; or skip (fail in CI) when it is absent."""
    if not path.exists():
        skip_or_fail(
            f"shared corpus missing: {path} (put the corpora at ../shared/data beside the "
            "checkout or set NEWSWATCH_SHARED_DATA)"
        )
    return path


FIXTURES = Path(__file__).parent / "fixtures"

BACKENDS = ["sqlite", "postgres"]


def _postgres_schema_url(base: str) -> tuple[str, str]:
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(normalise_url(base))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return base, schema


def _drop_schema(base: str, schema: str) -> None:
    admin = create_engine(normalise_url(base))
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


@contextmanager
def empty_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty database on `backend` ("sqlite" or "postgres"), dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'newswatch.db'}"
        return
    if not PG_URL:
        skip_or_fail("NEWSWATCH_TEST_DATABASE_URL not set (CI must set it)")
    base, schema = _postgres_schema_url(PG_URL)
    sep = "&" if "?" in base else "?"
    try:
        yield f"{normalise_url(base)}{sep}options=-csearch_path%3D{schema}"
    finally:
        _drop_schema(base, schema)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Parametrised over SQLite and Postgres: an empty, unmigrated database URL."""
    with empty_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """A migrated store on SQLite and on Postgres."""
    eng = make_engine(store_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'newswatch.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def cli_env(store_url: str) -> dict[str, str]:
    """Environment for running `newswatch` as a child process against a store on SQLite and
    on Postgres (see tests.test_cli.newswatch)."""
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": store_url,
            "NEWSWATCH_HTTP_MIN_HOST_DELAY": "0",
            "NEWSWATCH_LOG_FORMAT": "json",
            "NEWSWATCH_HTTP_PORT": "0",
        }
    )
    env.pop("NEWSWATCH_CONFIG", None)
    return env


@pytest.fixture
def server() -> Iterator[LocalServer]:
    """A real HTTP server on 127.0.0.1; set `server.routes[path] = handler`."""
    with LocalServer() as srv:
        yield srv
