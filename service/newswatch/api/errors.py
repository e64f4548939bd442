"""JSON errors: every 4xx names what was wrong, and no request can cause a bare 500 page."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from newswatch.errors import NewswatchError
from newswatch.log import get_logger

log = get_logger(__name__)

RETRY_AFTER_SECONDS = 2  # what a 503 asks clients to wait


class ApiError(NewswatchError):
    """An error answered as JSON; `parameter` names the request parameter at fault (it is
    already in `message` where the client needs it, so `where` stays unset)."""

    def __init__(self, status: int, message: str, parameter: str | None = None):
        super().__init__(message)
        self.status = status
        self.parameter = parameter


def bad_parameter(parameter: str, message: str) -> ApiError:
    return ApiError(400, f"{parameter}: {message}", parameter)


def error_body(status: int, message: str, parameter: str | None = None, **extra: Any) -> dict:
    error: dict[str, Any] = {"status": status, "message": message}
    if parameter is not None:
        error["parameter"] = parameter
    error.update(extra)
    return {"error": error}


def _location(loc: tuple[Any, ...]) -> tuple[str, str]:
    """('query', 'limit') -> ('query', 'limit'); ('body',) -> ('body', 'body')."""
    where = str(loc[0]) if loc else "request"
    name = ".".join(str(part) for part in loc[1:]) or where
    return where, name


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for err in exc.errors():
        where, name = _location(tuple(err.get("loc", ())))
        problems.append({"parameter": name, "in": where, "message": err.get("msg", "invalid")})
    first = problems[0] if problems else {"parameter": None, "message": "invalid request"}
    message = f"{first['parameter']}: {first['message']}"
    body = error_body(422, message, first["parameter"], problems=problems)
    return JSONResponse(body, status_code=422)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.status, exc.message, exc.parameter), status_code=exc.status)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(
        error_body(exc.status_code, str(exc.detail)),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def busy_response(reason: str) -> JSONResponse:
    """503 with Retry-After: the store (or the API's share of it) is busy or unreachable."""
    message = f"service busy: {reason}; retry after {RETRY_AFTER_SECONDS} s"
    return JSONResponse(
        error_body(503, message),
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A statement that ran past the API's statement timeout, a pool with no connection to
    spare, a store that does not answer: the client may try again; nothing is wrong with
    its request."""
    detail = str(getattr(exc, "orig", None) or exc) or type(exc).__name__
    log.warning("store unavailable to a request", path=request.url.path, error=detail[:300])
    return busy_response("the store did not answer in time")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("request failed", path=request.url.path)
    return JSONResponse(error_body(500, "internal error (logged)"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    # Starlette types a handler as taking any Exception, so one declared for its own
    # exception class does not fit, though Starlette calls it only with that class.
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(OperationalError, _store_unavailable)
    app.add_exception_handler(PoolTimeout, _store_unavailable)
    app.add_exception_handler(Exception, _unexpected)
