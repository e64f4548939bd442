"""Channels against real receivers on 127.0.0.1: a webhook receiver that checks signatures,
aiosmtpd (plain, STARTTLS with login, implicit TLS) and apprise's json:// to a local server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from newswatch.alerts.channels import Channel, SendResult, build_channel
from newswatch.alerts.channels.webhook import body_of, sign
from newswatch.alerts.config import ChannelConfig
from newswatch.config import Settings
from tests.alert_support import SECRET, _Inbox, free_port, smtp_server, verify, webhook_receiver
from tests.localserver import LocalServer


def payload(event_id: int = 7, title: str = "Quake <script>alert(1)</script> & co") -> dict:
    return {
        "rule": "quake",
        "event_id": event_id,
        "revision": 1,
        "kind": "event",
        "idempotency_key": f"quake:{event_id}:1",
        "title": title,
        "first_seen": "2026-11-22T08:00:00+00:00",
        "last_seen": "2026-11-22T09:30:00+00:00",
        "article_count": 2,
        "source_count": 2,
        "sources": ["alpha", "beta"],
        "articles": [
            {
                "id": 1,
                "title": title,
                "url": "https://alpha.example/q?a=1&b=<2>",
                "sources": ["alpha"],
                "published": "2026-11-22T08:00:00+00:00",
            },
            {"id": 2, "title": "Aftershocks", "url": None, "sources": ["beta"], "published": ""},
        ],
        "why": {"query": "quake", "matched_terms": ["quake"], "sources_in_window": 2},
    }


def send(channel: Channel, payloads: list[dict[str, Any]]) -> SendResult:
    async def go() -> SendResult:
        try:
            return await channel.send(payloads)
        finally:
            await channel.aclose()

    return asyncio.run(go())


def webhook(url: str, **kw: Any) -> Channel:
    config = ChannelConfig(name="ops", type="webhook", url=url, secret=SECRET, **kw)
    return build_channel(config, Settings(_env_file=None))  # type: ignore[call-arg]


# --- webhook -----------------------------------------------------------------------------------


def test_webhook_is_signed_and_carries_the_idempotency_key() -> None:
    with webhook_receiver() as receiver:
        result = send(webhook(receiver.url(), headers={"X-Team": "desk"}), [payload()])
        assert result.ok and result.status == 200
        assert receiver.bad_signatures == 0 and receiver.keys == ["quake:7:1"]
        (request,) = receiver.server.hits("/hook")
        assert request.headers["X-Team"] == "desk"
        assert request.headers["Content-Type"] == "application/json"
        (body,) = receiver.accepted
        assert body["type"] == "notification" and body["title"] == payload()["title"]


def test_signature_covers_timestamp_and_body() -> None:
    body, key = body_of([payload()])
    header = sign(SECRET, 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=") and key == "quake:7:1"
    assert verify(SECRET, header, body, tolerance=10**10)
    assert not verify(SECRET, header, body.replace(b"quake", b"quack"), tolerance=10**10)
    assert not verify("other-secret", header, body, tolerance=10**10)
    assert not verify(SECRET, header, body)  # an old timestamp is refused (replay)


def documented_verifier() -> Any:
    """`verify_newswatch` from the receiver example in docs/webhooks.md."""
    text = (Path(__file__).parents[1] / "docs" / "webhooks.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    source = next(b for b in blocks if "def verify_newswatch" in b)
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    return namespace["verify_newswatch"]


def test_the_documented_receiver_check_accepts_our_signatures() -> None:
    check = documented_verifier()
    body, _ = body_of([payload()])
    now = int(time.time())
    assert check(SECRET, sign(SECRET, now, body), body)
    assert not check(SECRET, sign(SECRET, now, body), body + b" ")
    assert not check(SECRET, sign(SECRET, now - 3600, body), body)
    assert not check(SECRET, "garbage", body)
    with webhook_receiver() as receiver:  # and a real request's header and body
        assert send(webhook(receiver.url()), [payload()]).ok
        (request,) = receiver.server.hits("/hook")
        header = request.headers["X-Newswatch-Signature"]
    assert check(SECRET, header, json.dumps(receiver.accepted[0], sort_keys=True).encode())


def test_a_batch_is_one_message_with_a_key_independent_of_order() -> None:
    first, key = body_of([payload(1), payload(2)])
    _, same = body_of([payload(2), payload(1)])
    assert key == same and key.startswith("batch:")
    doc = json.loads(first)
    assert doc["type"] == "batch" and doc["idempotency_key"] == key
    assert [n["event_id"] for n in doc["notifications"]] == [1, 2]


@pytest.mark.parametrize(
    ("status", "headers", "permanent", "retry_after"),
    [
        (404, {}, True, None),
        (400, {}, True, None),
        (503, {"Retry-After": "7"}, False, 7.0),
        (429, {"Retry-After": "2"}, False, 2.0),
        (500, {}, False, None),
    ],
)
def test_webhook_answers_are_classified(
    status: int, headers: dict[str, str], permanent: bool, retry_after: float | None
) -> None:
    with LocalServer() as server:

        async def answer(request: web.Request) -> web.Response:
            return web.Response(status=status, headers=headers)

        server.routes["/hook"] = answer
        result = send(webhook(server.url("/hook")), [payload()])
    assert not result.ok and result.status == status and result.error == f"HTTP {status}"
    assert result.permanent is permanent and result.retry_after == retry_after


def test_webhook_connection_refused_is_retryable() -> None:
    result = send(webhook(f"http://127.0.0.1:{free_port()}/hook", timeout=2), [payload()])
    assert not result.ok and not result.permanent and "ConnectError" in (result.error or "")


def test_webhook_redirect_is_not_followed() -> None:
    with LocalServer() as server:

        async def moved(request: web.Request) -> web.Response:
            raise web.HTTPFound("/elsewhere")

        server.routes["/hook"] = moved
        result = send(webhook(server.url("/hook")), [payload()])
        assert not result.ok and result.status == 302 and server.hits("/elsewhere") == []


# --- email -------------------------------------------------------------------------------------


def smtp_settings(port: int, **kw: Any) -> Settings:
    values = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": port, "SMTP_SECURITY": "none"}
    values.update(kw)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def mailer(settings: Settings) -> Channel:
    config = ChannelConfig(name="desk", type="email", to=["desk@example.org", "b@example.org"])
    return build_channel(config, settings)


def parts(message: Message) -> dict[str, str]:
    out = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            out[part.get_content_type()] = part.get_payload(decode=True).decode()  # type: ignore[union-attr]
    return out


def test_email_has_text_and_escaped_html() -> None:
    with smtp_server() as (inbox, port):
        result = send(mailer(smtp_settings(port)), [payload()])
        assert result.ok and result.status == 250
        (raw,) = inbox.messages
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["To"] == "desk@example.org, b@example.org"
    assert message["X-Newswatch-Idempotency-Key"] == "quake:7:1"
    assert "[quake] Quake <script>" in message["Subject"]
    body = parts(message)
    assert "Quake <script>alert(1)</script> & co" in body["text/plain"]
    assert "https://alpha.example/q?a=1&b=<2>" in body["text/plain"]
    html = body["text/html"]
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html
    assert 'href="https://alpha.example/q?a=1&amp;b=&lt;2&gt;"' in html


def test_email_batch_is_one_message() -> None:
    with smtp_server() as (inbox, port):
        assert send(mailer(smtp_settings(port)), [payload(1), payload(2, "Storm")]).ok
        (raw,) = inbox.messages
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"].startswith("[newswatch] 2 events: [quake]")
    assert message["X-Newswatch-Idempotency-Key"] == "quake:1:1,quake:2:1"
    assert "Storm" in parts(message)["text/plain"]


class _Refusing(_Inbox):
    def __init__(self, code: str) -> None:
        super().__init__()
        self.code = code

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        return self.code


@pytest.mark.parametrize(("code", "permanent"), [("550 no such user", True), ("451 later", False)])
def test_email_refusals_are_classified(code: str, permanent: bool) -> None:
    port = free_port()
    controller = Controller(_Refusing(code), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        result = send(mailer(smtp_settings(port)), [payload()])
    finally:
        controller.stop()
    assert not result.ok and result.status == int(code[:3]) and result.permanent is permanent


def test_email_without_smtp_host_is_a_permanent_failure() -> None:
    result = send(mailer(Settings(_env_file=None)), [payload()])  # type: ignore[call-arg]
    assert not result.ok and result.permanent and "SMTP_HOST" in (result.error or "")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made by the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1"
    command += " -addext subjectAltName=IP:127.0.0.1"
    subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextmanager
def tls_smtp(
    certificate: tuple[Path, Path], implicit: bool
) -> Iterator[tuple[_Inbox, int, list[str]]]:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    logins: list[str] = []

    def authenticate(server, session, envelope, mechanism, data):  # type: ignore[no-untyped-def]
        assert isinstance(data, LoginPassword)
        logins.append(data.login.decode())
        # handled=False: aiosmtpd answers a refusal with 535 itself (its default, handled=True,
        # sends no answer at all and the client times out).
        return AuthResult(success=data.password == b"s3cret", handled=False)

    inbox, port = _Inbox(), free_port()
    tls = {"ssl_context": context} if implicit else {"tls_context": context}
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        # aiosmtpd only counts STARTTLS as TLS for AUTH; with implicit TLS all of it is TLS.
        auth_require_tls=not implicit,
        require_starttls=not implicit,
        **tls,  # type: ignore[arg-type]
    )
    controller.start()
    try:
        yield inbox, port, logins
    finally:
        controller.stop()


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_email_over_tls_with_login(
    security: str, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust our self-signed CA
    with tls_smtp(certificate, implicit=security == "tls") as (inbox, port, logins):
        settings = smtp_settings(
            port, SMTP_SECURITY=security, SMTP_USERNAME="alerts", SMTP_PASSWORD="s3cret"
        )
        assert send(mailer(settings), [payload()]).ok
    assert len(inbox.messages) == 1 and logins == ["alerts"]
    message = email.message_from_bytes(inbox.messages[0], policy=email.policy.default)
    assert message["X-Newswatch-Idempotency-Key"] == "quake:7:1"


def test_email_with_a_wrong_password_fails_permanently_and_names_no_secret(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    with tls_smtp(certificate, implicit=False) as (inbox, port, logins):
        settings = smtp_settings(
            port, SMTP_SECURITY="starttls", SMTP_USERNAME="alerts", SMTP_PASSWORD="wr0ng-pass"
        )
        result = send(mailer(settings), [payload()])
    # The server saw the login (once per mechanism it offers) and refused it (535); nothing
    # was delivered, and retrying with the same password cannot help, so the row goes dead at
    # once, for the operator to see in `deliveries list --failed` and retry when it is fixed.
    assert logins and set(logins) == {"alerts"} and inbox.messages == []
    assert not result.ok and result.status == 535 and result.permanent
    assert result.error and "535" in result.error and "wr0ng-pass" not in result.error


# --- apprise -----------------------------------------------------------------------------------


def test_apprise_posts_to_a_local_json_endpoint() -> None:
    got: list[dict] = []
    with LocalServer() as server:

        async def hook(request: web.Request) -> web.Response:
            got.append(await request.json())
            return web.json_response({})

        server.routes["/notify"] = hook
        url = f"json://127.0.0.1:{server.port}/notify"
        config = ChannelConfig(name="chat", type="apprise", urls=[url])
        channel = build_channel(config, Settings(_env_file=None))  # type: ignore[call-arg]
        assert send(channel, [payload()]).ok
        assert send(channel, [payload(1), payload(2, "Storm")]).ok
    assert got[0]["title"].startswith("[quake] Quake <script>")
    assert "https://alpha.example/q?a=1&b=<2>" in got[0]["message"]
    assert got[1]["title"].startswith("2 events:") and "Storm" in got[1]["message"]


def test_apprise_failure_is_retryable() -> None:
    with LocalServer() as server:

        async def down(request: web.Request) -> web.Response:
            return web.Response(status=503)

        server.routes["/notify"] = down
        url = f"json://127.0.0.1:{server.port}/notify"
        config = ChannelConfig(name="chat", type="apprise", urls=[url])
        result = send(build_channel(config, Settings(_env_file=None)), [payload()])  # type: ignore[call-arg]
    assert not result.ok and not result.permanent and "apprise" in (result.error or "")


def test_email_has_a_date_and_the_event_link() -> None:
    """Issue 14, item 5: RFC 5322 requires Date (spam filters and clients rely on it), and a
    reader needs the way back to the event (its page under NEWSWATCH_PUBLIC_URL)."""
    linked = payload() | {"url": "https://news.example.org/watch/events/7"}
    with smtp_server() as (inbox, port):
        before = time.time()
        assert send(mailer(smtp_settings(port)), [linked, payload(8, "Storm")]).ok
        after = time.time()
        (raw,) = inbox.messages
    message = email.message_from_bytes(raw, policy=email.policy.default)
    date = message["Date"].datetime
    assert date.tzinfo is not None and before - 1 <= date.timestamp() <= after + 1
    body = parts(message)
    assert "https://news.example.org/watch/events/7" in body["text/plain"]
    assert '<a href="https://news.example.org/watch/events/7">' in body["text/html"]
    # Without a public URL there is no link (and no dangling label).
    assert body["text/plain"].count("Event page:") == 1
