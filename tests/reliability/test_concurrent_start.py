"""Two processes started at the same instant on one empty store both come up, with one set
of sources (issue 16: one died with UniqueViolation on ix_sources_name). Real `newswatch`
processes, a real feed server on 127.0.0.1, SQLite and a real Postgres."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from newswatch.store.db import make_engine, upgrade
from tests.localserver import LocalServer, static
from tests.reliability.processes import Newswatch

SOURCES = 300  # a config sync long enough for the two to overlap
EXIT_SECONDS = 180

FEED = b"<rss version='2.0'><channel><title>t</title></channel></rss>"


@pytest.mark.parametrize("migrated", [False, True], ids=["empty", "migrated"])
def test_two_processes_started_together_on_an_empty_store_both_come_up(
    cli_env: dict[str, str], server: LocalServer, tmp_path: Path, migrated: bool
) -> None:
    """Empty: both would create the tables; migrated: both would insert the sources."""
    server.routes["/feed"] = static(FEED, content_type="application/rss+xml")
    config = tmp_path / "newswatch.yaml"
    config.write_text(
        "sources:\n"
        + "".join(
            f"  - name: s{n}\n    url: {server.url('/feed')}?n={n}\n    interval: 10m\n"
            for n in range(SOURCES)
        )
    )
    env = cli_env | {"NEWSWATCH_CONFIG": str(config)}
    if migrated:
        engine = make_engine(env["DATABASE_URL"])
        upgrade(engine)
        engine.dispose()
    # `run --once` starts as `run` does (migrations, then the config's sources), then polls
    # once and exits: both must get through.
    first = Newswatch(["run", "--once"], env, tmp_path / "first.log")
    second = Newswatch(["run", "--once"], env, tmp_path / "second.log")
    with first, second:
        codes = [nw.wait(EXIT_SECONDS) for nw in (first, second)]
        logs = [nw.log_text() for nw in (first, second)]
    assert codes == [0, 0], logs
    assert not any("UniqueViolation" in log or "IntegrityError" in log for log in logs), logs
    engine = make_engine(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            names = conn.execute(text("SELECT name FROM sources")).scalars().all()
    finally:
        engine.dispose()
    assert sorted(names) == sorted(f"s{n}" for n in range(SOURCES))
