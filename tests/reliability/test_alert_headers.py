"""A line break in an event title must not kill the email copy of an alert, and a defect in
a channel is a permanent failure logged as an error, not eight retries of the same crash."""

from __future__ import annotations

import asyncio
import email
import email.policy

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from newswatch.alerts.channels import SendResult
from newswatch.alerts.channels.email import build_message
from newswatch.alerts.config import ChannelConfig
from newswatch.alerts.delivery import DeliveryWorker
from newswatch.config import FileConfig, Settings
from newswatch.store.alert_models import Notification
from newswatch.store.db import session_scope
from newswatch.store.outbox import enqueue
from tests.alert_support import smtp_server

HOSTILE_TITLES = [
    "Quake\r\nBcc: victim@example.org",
    "Quake\nhits coast",
    "Quake\rhits\x00coast\x0b\x0c\x85\u2028end",
    "\r\n",
]


def payload(title: str, event_id: int = 7) -> dict:
    return {
        "rule": "quake",
        "event_id": event_id,
        "idempotency_key": f"quake:{event_id}:1",
        "title": title,
        "source_count": 2,
        "articles": [{"title": title, "url": "https://a.example/1", "sources": ["alpha"]}],
        "why": {"matched_terms": ["quake"]},
    }


def settings(port: int = 0) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=port,
        SMTP_SECURITY="none",
        NEWSWATCH_DELIVERY_BACKOFF_BASE=0.05,
        NEWSWATCH_DELIVERY_MAX_ATTEMPTS=8,
    )


@pytest.mark.parametrize("title", HOSTILE_TITLES)
def test_header_values_are_one_line(title: str):
    config = ChannelConfig(name="desk", type="email", to=["desk@example.org\n"])
    message = build_message(config, "newswatch@example.org\r\n", [payload(title)])
    raw = message.as_bytes(policy=email.policy.SMTP)
    headers = raw.split(b"\r\n\r\n", 1)[0].decode()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert "\n" not in parsed["Subject"] and "\r" not in parsed["Subject"]
    assert parsed["To"] == "desk@example.org"
    for line in headers.split("\r\n"):
        # Every physical line is a header or a folded continuation of one.
        assert ":" in line or line.startswith((" ", "\t")), line


def queue(engine, title: str) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        enqueue(
            session,
            rule="quake",
            channel="desk",
            event_id=7,
            revision=1,
            payload=payload(title),
        )


def rows(engine) -> list[Notification]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        return list(session.execute(select(Notification)).scalars())


def test_an_alert_with_a_line_break_in_its_title_is_emailed(engine):
    queue(engine, "Quake\r\nBcc: victim@example.org")
    channel = ChannelConfig(name="desk", type="email", to=["desk@example.org"])
    with smtp_server() as (inbox, port):
        worker = DeliveryWorker.from_config(engine, FileConfig(channels=[channel]), settings(port))
        assert asyncio.run(worker.run_once()) == ["sent"]
        (raw,) = inbox.messages
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == "[newswatch] [quake] Quake Bcc: victim@example.org (2 sources)"
    assert message["Bcc"] is None
    (row,) = rows(engine)
    assert row.status == "sent" and row.attempts == 1


class _Channel:
    name = "desk"

    def __init__(self, exc: BaseException):
        self.exc = exc

    async def send(self, payloads: list[dict]) -> SendResult:
        raise self.exc

    async def aclose(self) -> None:
        return None


def test_a_defect_in_a_channel_is_permanent_and_logged_as_an_error(engine):
    queue(engine, "Quake")
    worker = DeliveryWorker(engine, {"desk": _Channel(ValueError("a bug"))}, settings())  # type: ignore[dict-item]
    with capture_logs() as logs:
        assert asyncio.run(worker.run_once()) == ["dead"]
    (row,) = rows(engine)
    assert row.status == "dead" and row.attempts == 1
    assert "ValueError: a bug" in (row.last_error or "")
    failures = [entry for entry in logs if entry["event"] == "channel failed"]
    assert failures and failures[0]["log_level"] == "error"
    assert failures[0]["channel"] == "desk"


def test_an_io_error_escaping_a_channel_is_retried(engine):
    queue(engine, "Quake")
    worker = DeliveryWorker(engine, {"desk": _Channel(ConnectionResetError("reset"))}, settings())  # type: ignore[dict-item]
    assert asyncio.run(worker.run_once()) == ["retry"]
    (row,) = rows(engine)
    assert row.status == "pending" and "reset" in (row.last_error or "")
