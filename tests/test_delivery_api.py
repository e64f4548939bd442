"""The outbox as seen by operators: /api/deliveries and `newswatch deliveries list|retry`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, update

from newswatch.api import create_app
from newswatch.config import Settings
from newswatch.store.alert_models import Notification
from newswatch.store.db import session_scope
from newswatch.store.outbox import enqueue
from tests.api_support import Running, running
from tests.test_cli import newswatch

TABLE = Notification.__table__  # type: ignore[attr-defined]


def queue(engine: Engine, event_ids: range) -> None:
    with session_scope(engine) as session:
        for event_id in event_ids:
            enqueue(session, rule="r", channel="ops", event_id=event_id, revision=1, payload={})


def set_status(engine: Engine, event_id: int, **values: object) -> None:
    with session_scope(engine) as session:
        session.execute(update(TABLE).where(TABLE.c.event_id == event_id).values(**values))


@pytest.fixture
def outbox_rows(engine: Engine) -> Engine:
    queue(engine, range(1, 6))
    set_status(engine, 1, status="sent", attempts=1, response_status=200)
    set_status(engine, 2, status="dead", attempts=8, last_error="HTTP 500")
    set_status(engine, 3, attempts=2, last_error="ReadTimeout")  # waiting for a retry
    return engine


@pytest.fixture
def api(outbox_rows: Engine) -> Iterator[Running]:
    with running(create_app(outbox_rows, Settings(_env_file=None))) as srv:  # type: ignore[call-arg]
        yield srv


def test_api_lists_deliveries_newest_first_with_pages(api: Running) -> None:
    first = api.get("/api/deliveries", params={"limit": 3}).json()
    assert [d["event_id"] for d in first["items"]] == [5, 4, 3]
    assert first["items"][0]["idempotency_key"] == "r:5:1"
    second = api.get("/api/deliveries", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert [d["event_id"] for d in second["items"]] == [2, 1]
    assert second["next_cursor"] is None
    assert second["items"][1]["status"] == "sent" and second["items"][1]["response_status"] == 200


def test_api_filters_failed_and_status(api: Running) -> None:
    failed = api.get("/api/deliveries", params={"failed": "true"}).json()["items"]
    assert {(d["event_id"], d["status"]) for d in failed} == {(2, "dead"), (3, "pending")}
    dead = api.get("/api/deliveries", params={"status": "dead"}).json()["items"]
    assert [d["last_error"] for d in dead] == ["HTTP 500"]
    bad = api.get("/api/deliveries", params={"status": "lost"})
    assert bad.status_code == 422 and bad.json()["error"]["parameter"] == "status"


def test_api_one_delivery_and_not_found(api: Running) -> None:
    listed = api.get("/api/deliveries", params={"status": "sent"}).json()["items"]
    one = api.get(f"/api/deliveries/{listed[0]['id']}").json()
    assert one == listed[0]
    missing = api.get("/api/deliveries/999999")
    assert missing.status_code == 404 and "notification" in missing.json()["error"]["message"]


def test_cli_lists_failed_and_retries_a_dead_one(outbox_rows: Engine, cli_env) -> None:  # type: ignore[no-untyped-def]
    listed = newswatch("deliveries", "list", "--failed", "--json", env=cli_env)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {(r["event_id"], r["status"]) for r in rows} == {(2, "dead"), (3, "pending")}
    dead = next(r for r in rows if r["status"] == "dead")
    retried = newswatch("deliveries", "retry", str(dead["id"]), env=cli_env)
    assert retried.returncode == 0 and "queued again" in retried.stdout
    after = newswatch("deliveries", "list", "--json", env=cli_env)
    again = next(json.loads(x) for x in after.stdout.splitlines() if f'"id": {dead["id"]},' in x)
    assert again["status"] == "pending" and again["attempts"] == 0
    sent = newswatch("deliveries", "list", "--json", env=cli_env).stdout.splitlines()[-1]
    refused = newswatch("deliveries", "retry", str(json.loads(sent)["id"]), env=cli_env)
    assert refused.returncode == 1 and "is sent" in refused.stderr
    missing = newswatch("deliveries", "retry", "999999", env=cli_env)
    assert missing.returncode == 1 and "no notification with id 999999" in missing.stderr
    text = newswatch("deliveries", "list", env=cli_env).stdout
    assert len(text.splitlines()) == 5 and " dead " not in text
