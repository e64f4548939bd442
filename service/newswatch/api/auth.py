"""The optional bearer token (NEWSWATCH_API_TOKEN) that guards all but the health endpoints.

API clients send `Authorization: Bearer <token>`. A browser opens a page once with
`?token=<token>`: the token is kept in an HttpOnly cookie and the URL is cleaned. Feed readers
keep `?token=<token>` in the URL of an Atom feed (/feeds/…).
"""

from __future__ import annotations

import hmac
from urllib.parse import urlencode

from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from newswatch.api.errors import error_body

COOKIE = "newswatch_token"
OPEN_PATHS = ("/healthz", "/readyz", "/static/")
# Feed readers send neither an Authorization header nor cookies back: `?token=` is taken as
# it is on feeds, without the redirect that sets the cookie.
TOKEN_IN_QUERY_PATHS = ("/feeds/",)


def _matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def local_path(path: str) -> str:
    """`path` as a Location that stays on this server: a path starting `//` (or a
    backslash, which browsers read as a slash) would be scheme-relative, another host."""
    return "/" + path.lstrip("/\\")


class TokenMiddleware:
    """Pure ASGI middleware: answers 401 unless the request carries the token."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if (
            _matches(_bearer(request), self.token)
            or _matches(request.cookies.get(COOKIE), self.token)
            or (
                scope["path"].startswith(TOKEN_IN_QUERY_PATHS)
                and _matches(request.query_params.get("token"), self.token)
            )
        ):
            await self.app(scope, receive, send)
            return
        response = self._login_or_refuse(request)
        await response(scope, receive, send)

    def _login_or_refuse(self, request: Request) -> Response:
        given = request.query_params.get("token")
        if request.method == "GET" and _matches(given, self.token):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = local_path(request.url.path) + (f"?{urlencode(rest)}" if rest else "")
            response: Response = RedirectResponse(target, status_code=303)
            response.set_cookie(
                COOKIE,
                self.token,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
            return response
        message = "a valid bearer token is required (Authorization: Bearer <token>)"
        return JSONResponse(
            error_body(401, message, "Authorization"),
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="newswatch"'},
        )
