"""The optional bearer tokens that guard all but the health endpoints: NEWSWATCH_API_TOKEN
(one shared token) and NEWSWATCH_API_TOKENS (tokens with their holders' names).

API clients send `Authorization: Bearer <token>`. A browser opens a page once with
`?token=<token>`: the token is kept in an HttpOnly cookie and the URL is cleaned. Feed readers
keep `?token=<token>` in the URL of an Atom feed (/feeds/…). A request that carries a named
token has that name in `token_name(request)`: triage writes record it as who set a mark
(docs/decisions/0202-named-api-tokens.md).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
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
# Where the middleware leaves the holder's name for the routes (request.state).
STATE_KEY = "token_name"


@dataclass(frozen=True)
class Holder:
    """Who a valid token belongs to: `name` None for the shared NEWSWATCH_API_TOKEN."""

    name: str | None


def holder_of(given: str | None, holders: Mapping[str, str | None]) -> Holder | None:
    """The holder of `given` among `holders` ({token: name}), or None. Every token is
    compared, in constant time each, whichever matches: the time taken does not tell which
    token (or how many) came close."""
    if given is None:
        return None
    found: Holder | None = None
    for token, name in holders.items():
        if hmac.compare_digest(given.encode(), token.encode()):
            found = Holder(name)
    return found


def token_name(request: Request) -> str | None:
    """The name of the token the request carried; None without a token or with the
    unnamed one."""
    return getattr(request.state, STATE_KEY, None)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def local_path(path: str) -> str:
    """`path` as a Location that stays on this server: a path starting `//` (or a
    backslash, which browsers read as a slash) would be scheme-relative, another host."""
    return "/" + path.lstrip("/\\")


class TokenMiddleware:
    """Pure ASGI middleware: answers 401 unless the request carries one of the tokens."""

    def __init__(self, app: ASGIApp, holders: Mapping[str, str | None]):
        if not holders:
            raise ValueError("TokenMiddleware needs at least one token")
        self.app = app
        self.holders = dict(holders)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        holder = self._holder(request)
        if holder is not None:
            scope.setdefault("state", {})[STATE_KEY] = holder.name
            await self.app(scope, receive, send)
            return
        response = self._login_or_refuse(request)
        await response(scope, receive, send)

    def _holder(self, request: Request) -> Holder | None:
        """The holder of the token the request carries: header, else cookie, else (feeds)
        the query string."""
        for given in (_bearer(request), request.cookies.get(COOKIE)):
            if (holder := holder_of(given, self.holders)) is not None:
                return holder
        if request.scope["path"].startswith(TOKEN_IN_QUERY_PATHS):
            return holder_of(request.query_params.get("token"), self.holders)
        return None

    def _login_or_refuse(self, request: Request) -> Response:
        given = request.query_params.get("token")
        if request.method == "GET" and given and holder_of(given, self.holders) is not None:
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = local_path(request.url.path) + (f"?{urlencode(rest)}" if rest else "")
            response: Response = RedirectResponse(target, status_code=303)
            response.set_cookie(
                COOKIE,
                given,
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
