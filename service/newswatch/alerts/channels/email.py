"""Email channel over SMTP (aiosmtplib): plain text with an HTML alternative."""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib
from jinja2 import Environment, select_autoescape

from newswatch.alerts.channels import SendResult, summary_line
from newswatch.alerts.config import ChannelConfig
from newswatch.config import Settings

_HTML = Environment(autoescape=select_autoescape(default=True)).from_string(
    """<!doctype html><html><body>
{% for p in payloads %}
<h2>{{ p.title or "(untitled)" }}</h2>
<p>Rule <b>{{ p.rule }}</b> &middot; event {{ p.event_id }} &middot;
{{ p.source_count }} sources &middot; {{ p.first_seen }} &ndash; {{ p.last_seen }}</p>
<ul>{% for a in p.articles %}
<li>{% if a.url %}<a href="{{ a.url }}">{{ a.title or a.url }}</a>{% else %}{{ a.title }}{% endif %}
({{ a.sources | join(", ") }})</li>{% endfor %}</ul>
<p>Matched: {{ p.why.matched_terms | join(", ") }}</p>
{% if p.url %}<p>Event page: <a href="{{ p.url }}">{{ p.url }}</a></p>{% endif %}
{% endfor %}
</body></html>"""
)


def plain_text(payloads: list[dict[str, Any]]) -> str:
    parts = []
    for p in payloads:
        lines = [
            p.get("title") or "(untitled)",
            f"Rule {p.get('rule')}, event {p.get('event_id')}, {p.get('source_count')} sources, "
            f"{p.get('first_seen')} - {p.get('last_seen')}",
            "",
        ]
        for a in p.get("articles", []):
            lines.append(f"- {a.get('title')} ({', '.join(a.get('sources', []))})")
            if a.get("url"):
                lines.append(f"  {a['url']}")
        lines += ["", f"Matched: {', '.join(p.get('why', {}).get('matched_terms', []))}"]
        if p.get("url"):  # the event's page (NEWSWATCH_PUBLIC_URL)
            lines.append(f"Event page: {p['url']}")
        parts.append("\n".join(lines))
    return "\n\n----\n\n".join(parts) + "\n"


# Line breaks (ASCII and Unicode) and other control characters: a header value holds none.
_NOT_IN_HEADERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def header_value(text: str) -> str:
    """`text` on one line. Titles come from feeds: a CR or LF in one would end the header
    (the email library refuses it, a ValueError that no retry can cure)."""
    return " ".join(_NOT_IN_HEADERS.sub(" ", text).split())


def build_message(
    config: ChannelConfig, sender: str, payloads: list[dict[str, Any]]
) -> EmailMessage:
    message = EmailMessage()
    if len(payloads) == 1:
        subject = summary_line(payloads[0])
    else:
        subject = f"{len(payloads)} events: {summary_line(payloads[0])} and more"
    message["Subject"] = header_value(f"{config.subject_prefix} {subject}")
    message["From"] = header_value(sender)
    message["To"] = ", ".join(header_value(address) for address in config.to)
    message["Date"] = formatdate(usegmt=True)  # RFC 5322 requires it; filters check it
    message["Message-ID"] = make_msgid(domain="newswatch")
    keys = ",".join(p["idempotency_key"] for p in payloads)
    message["X-Newswatch-Idempotency-Key"] = header_value(keys[:900])
    message.set_content(plain_text(payloads))
    message.add_alternative(_HTML.render(payloads=payloads), subtype="html")
    return message


class EmailChannel:
    def __init__(self, config: ChannelConfig, settings: Settings):
        self.name = config.name
        self.config = config
        self.settings = settings

    async def send(self, payloads: list[dict[str, Any]]) -> SendResult:
        s = self.settings
        if not s.smtp_host:
            return SendResult(False, error="SMTP_HOST is not set", permanent=True)
        message = build_message(self.config, s.smtp_from, payloads)
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username or None,
                password=s.smtp_password or None,
                use_tls=s.smtp_security == "tls",
                start_tls=s.smtp_security == "starttls",
                timeout=s.smtp_timeout,
            )
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600
            return SendResult(
                False, exc.code, f"SMTP {exc.code}: {exc.message}", permanent=permanent
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            return SendResult(False, error=f"{type(exc).__name__}: {exc}")
        return SendResult(True, 250)

    async def aclose(self) -> None:
        return None
