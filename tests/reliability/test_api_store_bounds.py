"""The API's engine bounds every statement (issue 20, item 1): a runaway query ends with an
error the API answers 503, on SQLite (progress-handler deadline) and Postgres
(statement_timeout), and the connection is usable afterwards."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from newswatch.api import create_app
from newswatch.config import Settings
from newswatch.store.db import bounded_engine
from tests.api_support import running

# Runs for minutes unless stopped: SQLite counts to 10^10, Postgres sleeps 10 minutes.
RUNAWAY = {
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
    "WHERE i < 10000000000) SELECT count(*) FROM n",
    "postgresql": "SELECT pg_sleep(600)",
}


def test_a_runaway_statement_is_stopped_and_the_pool_recovers(engine: Engine) -> None:
    bounded = bounded_engine(engine, connections=1, statement_timeout=0.3)
    try:
        with bounded.connect() as conn, pytest.raises(OperationalError):
            conn.execute(text(RUNAWAY[engine.dialect.name])).all()
        with bounded.connect() as conn:  # the same pooled connection, working again
            assert conn.execute(text("SELECT count(*) FROM articles")).scalar() == 0
    finally:
        bounded.dispose()


def test_the_ingestion_engine_has_no_statement_deadline(engine: Engine) -> None:
    """Only the API's engine is bounded: a long write of ingestion is never cut short."""
    with engine.connect() as conn:
        query = "SELECT count(*) FROM (SELECT 1 FROM articles) AS a"
        assert conn.execute(text(query)).scalar() == 0
        if engine.dialect.name == "postgresql":
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"


def test_a_store_that_times_out_is_answered_503_with_retry_after(engine: Engine) -> None:
    """The API maps a statement timeout (an OperationalError) to 503 + Retry-After, not 500."""
    bounded = bounded_engine(engine, connections=1, statement_timeout=0.3)
    app = create_app(bounded, Settings())  # type: ignore[call-arg]

    @app.get("/api/runaway")
    def runaway() -> dict[str, int]:
        with bounded.connect() as conn:
            return {"n": conn.execute(text(RUNAWAY[engine.dialect.name])).scalar() or 0}

    try:
        with running(app) as client:
            response = client.get("/api/runaway")
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"].isdigit()
            assert response.json()["error"]["status"] == 503
            assert client.get("/api/sources").status_code == 200
    finally:
        bounded.dispose()
