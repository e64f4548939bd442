"""`newswatch sources list`: every name whole (issue 14 item 6), the host wait shown."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import Session

from newswatch.cli import main
from newswatch.store.models import Source

LONG = ("real:invalid-missing-items", "real:invalid-missing-item-titles")


def test_names_are_whole_and_the_host_wait_is_a_column(engine: Engine, store_url: str):
    fetched = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    with Session(engine) as s:
        for n, name in enumerate(LONG):
            s.add(
                Source(
                    name=name,
                    url=f"http://127.0.0.1:9/{n}",
                    configured_url=f"http://127.0.0.1:9/{n}",
                    last_fetch_at=fetched,
                    last_outcome="ok",
                    last_status=200,
                    host_wait_seconds=298.4 + n,
                )
            )
        s.add(
            Source(
                name="b",
                url="http://127.0.0.1:9/b",
                configured_url="http://127.0.0.1:9/b",
                last_outcome="http_error",
                last_status=500,
                consecutive_errors=2,
                last_error="HTTP 500",
            )
        )
        s.commit()
    runner = CliRunner()
    table = runner.invoke(main, ["--database-url", store_url, "sources", "list"])
    assert table.exit_code == 0, table.output
    header, *rows = table.output.splitlines()
    assert header.split()[:3] == ["NAME", "KIND", "STATE"] and "HOST WAIT" in header
    # Both long names whole (they used to be cut to the same 24 characters).
    assert [r.split()[0] for r in rows if r.startswith("real:")] == sorted(LONG)
    waits = {r.split()[0]: r.split()[-2] for r in rows if r.startswith("real:")}
    assert waits == {LONG[0]: "4m58s", LONG[1]: "4m59s"}
    # Columns line up: every row's URL starts where the header's does.
    url_at = header.index("URL")
    assert all(r[url_at:].startswith("http://") for r in rows if not r.startswith("  "))
    assert rows[0].startswith("b ") and rows[1] == "  error: HTTP 500"
    listed = runner.invoke(main, ["--database-url", store_url, "sources", "list", "--json"])
    rows_json = [json.loads(line) for line in listed.output.splitlines()]
    assert {r["name"]: r["host_wait_seconds"] for r in rows_json} == {
        "b": None,
        LONG[0]: 298.4,
        LONG[1]: 299.4,
    }
