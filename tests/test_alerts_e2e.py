"""Alerts end to end: a replayed stream, a signed webhook and an email, on SQLite and Postgres."""

from __future__ import annotations

import email
import json
from pathlib import Path

from tests.alert_support import SECRET, smtp_server, webhook_receiver
from tests.cli_support import newswatch
from tests.test_replay import STREAM

SUMMIT_QUERY = '(Belousov OR "defence minister") AND (DPRK OR "North Korea" OR Pyongyang)'


def write_config(tmp_path: Path, hook_url: str, extra_rule: str = "") -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(
        f"""
channels:
  - name: ops
    type: webhook
    url: {hook_url}
    secret: ${{WEBHOOK_SECRET}}
  - name: desk
    type: email
    to: [desk@example.org]
rules:
  - name: summit
    query: '{SUMMIT_QUERY}'
    min_sources: 2
    window: 24h
    channels: [ops, desk]
  - name: quake
    query: 'earthquake OR quake'
    min_sources: 5
    channels: [ops]
{extra_rule}"""
    )
    return path


def test_replay_sends_one_signed_webhook_and_one_email(cli_env, tmp_path):
    with webhook_receiver() as receiver, smtp_server() as (inbox, port):
        env = dict(cli_env)
        env.update(
            {
                "NEWSWATCH_CONFIG": str(write_config(tmp_path, receiver.url())),
                "WEBHOOK_SECRET": SECRET,
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(port),
                "SMTP_SECURITY": "none",
            }
        )
        result = newswatch("replay", str(STREAM), env=env)
        assert result.returncode == 1  # the fixture's two bad lines
        assert "2 notifications sent" in result.stderr, result.stderr
        # The quake event has 4 sources: below its rule's 5, so nothing for it.
        assert receiver.bad_signatures == 0 and len(receiver.accepted) == 1
        body = receiver.accepted[0]
        assert body["rule"] == "summit" and body["revision"] == 1
        # The replay decides per batch: all three reports were in by then.
        assert body["why"]["sources_in_window"] == 3 and "belousov" in body["why"]["matched_terms"]
        assert {a["title"] for a in body["articles"]} >= {
            "Belousov meets North Korean defence minister No Kwang Chol in Pyongyang"
        }
        assert body["idempotency_key"] == f"summit:{body['event_id']}:1"
        assert len(inbox.messages) == 1
        message = email.message_from_bytes(inbox.messages[0])
        assert "summit" in message["Subject"] and message["To"] == "desk@example.org"
        kinds = {part.get_content_type() for part in message.walk()}
        assert {"text/plain", "text/html"} <= kinds

        # A second replay of the same file stores nothing new and sends nothing again.
        again = newswatch("replay", str(STREAM), env=env)
        assert "0 notifications sent" in again.stderr
        assert len(receiver.accepted) == 1 and receiver.attempts == 1

        listed = newswatch("deliveries", "list", "--json", env=env)
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert sorted(r["channel"] for r in rows) == ["desk", "ops"]
        assert {r["status"] for r in rows} == {"sent"}


def test_rules_test_is_a_dry_run(cli_env, tmp_path):
    with webhook_receiver() as receiver:
        env = dict(cli_env)
        env.update(
            {
                "NEWSWATCH_CONFIG": str(write_config(tmp_path, receiver.url())),
                "WEBHOOK_SECRET": SECRET,
            }
        )
        assert newswatch("replay", str(STREAM), "--no-alerts", env=env).returncode == 1
        dry = newswatch("rules", "test", "summit", "--since", "3650d", "--json", env=env)
        assert dry.returncode == 0, dry.stderr
        fired = [json.loads(line) for line in dry.stdout.splitlines()]
        assert len(fired) == 1 and fired[0]["sources"] == 3
        query = newswatch(
            "rules",
            "test",
            "--query",
            "Arequipa",
            "--min-sources",
            "4",
            "--since",
            "3650d",
            "--json",
            env=env,
        )
        assert len(query.stdout.splitlines()) == 1
        bad = newswatch("rules", "test", "--query", "(Arequipa", env=env)
        assert bad.returncode == 2 and 'col 1: unmatched "("' in bad.stderr
        assert receiver.attempts == 0  # nothing was sent by any of it
        listed = newswatch("deliveries", "list", env=env)
        assert listed.stdout.strip() == ""


def test_silence_suppresses_and_is_listed(cli_env, tmp_path):
    with webhook_receiver() as receiver:
        env = dict(cli_env)
        env.update(
            {
                "NEWSWATCH_CONFIG": str(write_config(tmp_path, receiver.url())),
                "WEBHOOK_SECRET": SECRET,
            }
        )
        added = newswatch(
            "silence", "add", "--rule", "summit", "--for", "8h", "--reason", "drill", env=env
        )
        assert added.returncode == 0, added.stderr
        assert "summit" in newswatch("silence", "list", env=env).stdout
        newswatch("replay", str(STREAM), env=env)
        assert receiver.attempts == 0
        unknown = newswatch("silence", "add", "--rule", "nope", "--for", "1h", env=env)
        assert unknown.returncode == 1 and "no rule named 'nope'" in unknown.stderr
