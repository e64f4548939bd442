"""The live pages: recent events (/), one event, and source health. Server-rendered."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlmodel import Session

from newswatch.api import events, queries
from newswatch.api.deps import get_session
from newswatch.store import outbox

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

router = APIRouter(include_in_schema=False)


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """'5 min ago', '3 h ago', '2 d ago': short enough for a phone."""
    if when is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def http_url(url: str | None) -> str | None:
    """Only http(s) links from feeds reach a page: no javascript: or data: URLs."""
    if url and url.strip().lower().startswith(("http://", "https://")):
        return url.strip()
    return None


templates.env.filters["ago"] = ago
templates.env.filters["http_url"] = http_url
templates.env.filters["report_time"] = events.report_time
templates.env.filters["generic"] = events.is_generic_title


def render(request: Request, name: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        name,
        {"now": datetime.now(UTC), "root": request.scope.get("root_path", ""), **context},
    )


DEAD_LETTERS_SHOWN = 20


@router.get("/sources", response_class=HTMLResponse)
def sources_page(request: Request, session: Session = Depends(get_session)) -> HTMLResponse:
    """Source health, and the notifications that were dead-lettered (newest first)."""
    sources = queries.list_sources(session)
    failing = sum(1 for s in sources if s.consecutive_errors > 0)
    return render(
        request,
        "sources.html",
        sources=sources,
        failing=failing,
        dead_count=outbox.dead_letter_count(session),
        dead=outbox.list_deliveries(session, status="dead", limit=DEAD_LETTERS_SHOWN),
    )
