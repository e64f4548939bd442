"""The FastAPI application: health, metrics, the read API and the live pages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from newswatch import __version__
from newswatch.api import (
    articles_routes,
    delivery_routes,
    event_routes,
    feeds,
    pages,
    routes,
    system,
)
from newswatch.api.auth import TokenMiddleware
from newswatch.api.errors import install_error_handlers
from newswatch.api.gate import ConcurrencyGate
from newswatch.api.health import DEFAULT_TICK_MAX_AGE, Readiness, SchedulerStatus
from newswatch.api.liveness import Verdict
from newswatch.config import FileConfig, Settings

STATIC_DIR = Path(__file__).parent / "static"

DESCRIPTION = """Read access to what newswatch has seen: events (groups of reports about one
happening), articles, sources and their fetch health, alert rules and deliveries.

Lists are paginated with cursors: pass a page's `next_cursor` as `cursor`. Errors are JSON
`{"error": {"status", "message", "parameter"}}`. When `NEWSWATCH_API_TOKEN` is set, every
endpoint except /healthz and /readyz needs `Authorization: Bearer <token>`. When more requests
arrive at once than the API's share of the store allows, the surplus is answered 503 with
`Retry-After`."""


def create_app(
    engine: Engine,
    settings: Settings,
    *,
    status: SchedulerStatus | None = None,
    tick_max_age: float = DEFAULT_TICK_MAX_AGE,
    ready_timeout: float = 4.0,
    config: FileConfig | None = None,
    service_metrics: Callable[[], bytes] | None = None,
    liveness: Callable[[], Verdict] | None = None,
) -> FastAPI:
    """The app over `engine`; `status` is the running service's scheduler status (None under
    `newswatch serve`, where readiness checks only the store and its migrations); `config`
    is the config file, whose alert rules /api/rules lists; `service_metrics` gives the
    service's own metrics when the app runs in a process apart from it (api/process.py);
    `liveness` tells /healthz whether the service's event loops still turn (api/liveness.py;
    None: answering is liveness enough)."""
    app = FastAPI(
        title="newswatch",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.config = config
    app.state.service_metrics = service_metrics
    app.state.liveness = liveness
    app.state.readiness = Readiness(engine, status, tick_max_age, ready_timeout)
    install_error_handlers(app)
    # The gate inside the token check: a request without the token takes no slot.
    app.add_middleware(ConcurrencyGate, limit=settings.api_max_concurrent)
    if settings.token_holders:
        app.add_middleware(TokenMiddleware, holders=settings.token_holders)
    app.include_router(system.router)
    app.include_router(routes.router)
    app.include_router(articles_routes.router)
    app.include_router(event_routes.api)
    app.include_router(delivery_routes.api)
    app.include_router(pages.router)
    app.include_router(event_routes.pages)
    app.include_router(feeds.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
