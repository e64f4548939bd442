"""/metrics of the scaled grouper: grouping lag (articles and seconds) and the lock's holder,
computed from the store at scrape time, on SQLite and Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from newswatch.api.metrics import render_metrics
from newswatch.shared_types import ParsedEntry
from newswatch.store.articles import ensure_source, store_batch
from newswatch.store.db import session_scope
from newswatch.store.grouper_lease import take_lease

STORED_AT = datetime.now(UTC) - timedelta(minutes=10)


def _sample(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_lag_and_holder_once_a_grouper_leads(engine: Engine) -> None:
    with session_scope(engine) as session:
        source = ensure_source(session, "wire")
        entries = [ParsedEntry(url=f"https://example.org/{n}", title=f"t{n}") for n in range(3)]
        store_batch(session, [(source, e) for e in entries], now=STORED_AT)
    text = render_metrics(engine)[0].decode()
    assert "newswatch_grouper_leader{" not in text  # no scaled grouper: nothing to show
    with session_scope(engine) as session:
        take_lease(session, "host-a:41")
    text = render_metrics(engine)[0].decode()
    assert _sample(text, "newswatch_grouping_lag_articles") == 3
    lag = _sample(text, "newswatch_grouping_lag_seconds")
    assert lag is not None and lag >= 600  # the oldest waits since STORED_AT
    assert 'newswatch_grouper_leader{holder="host-a:41"} 1.0' in text
    with session_scope(engine) as session:
        take_lease(session, "host-b:7")  # a takeover: the old holder's line goes
    text = render_metrics(engine)[0].decode()
    assert 'newswatch_grouper_leader{holder="host-b:7"} 2.0' in text
    assert "host-a:41" not in text
