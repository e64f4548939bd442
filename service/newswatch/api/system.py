"""Health endpoints and /metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from newswatch.api.errors import busy_response
from newswatch.api.metrics import render_metrics
from newswatch.api.routes import bearer
from newswatch.api.schemas import HealthOut, ReadyOut
from newswatch.log import get_logger

log = get_logger(__name__)

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=HealthOut,
    responses={503: {"description": "an event loop of the service is stuck; `stuck` names it"}},
)
async def healthz(request: Request) -> Response:
    """The process is alive and answers requests and, under `newswatch run`, ingestion's
    event loop still turns (no store access; run on the event loop, not in the worker
    threads that API load may keep busy)."""
    check = request.app.state.liveness
    if check is None:
        return JSONResponse({"status": "ok"})
    verdict = check()
    return Response(verdict.body, status_code=verdict.status, media_type="application/json")


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "a check failed; `failed` names it"}},
)
async def readyz(request: Request) -> JSONResponse:
    """The store answers, migrations are current and (under `newswatch run`) the scheduler
    is running and ticked recently."""
    readiness = request.app.state.readiness
    try:
        # A store that hangs (network partition) must not hang the probe.
        ready, body = await asyncio.wait_for(asyncio.to_thread(readiness.check), readiness.timeout)
    except TimeoutError:
        ready, body = False, readiness.timed_out(readiness.timeout)
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(bearer)],
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request) -> Response:
    """Prometheus metrics; store-derived gauges are computed at scrape time."""
    state = request.app.state
    try:
        payload, content_type = render_metrics(state.engine, state.service_metrics)
    except OSError as exc:  # the service's process did not answer in time
        log.warning("the service's metrics did not arrive", error=repr(exc))
        return busy_response("the service's metrics did not arrive in time")
    return Response(payload, media_type=content_type)
