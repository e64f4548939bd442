"""Writes from another site are refused (cross-site request forgery).

A browser adds `Sec-Fetch-Site` and `Origin` to every POST it sends; a form on another site
that posts here carries that site's origin. A write is refused unless the browser says it is
same-origin (or typed by the user), or, for browsers that send only `Origin`, that origin is
this server (its Host) or NEWSWATCH_PUBLIC_URL. Clients that are not browsers (curl, scripts)
send neither header and pass: they cannot be made to post by a page. The token cookie is
also SameSite=Strict (api/auth.py), but without a token there is no cookie to withhold, so
the origin check is what protects an open instance. Decision 0197.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request

from newswatch.api.errors import ApiError

ALLOWED_FETCH_SITES = ("same-origin", "none")


def _refuse(why: str) -> ApiError:
    return ApiError(403, f"cross-site write refused: {why}", "Origin")


def require_same_origin(request: Request) -> None:
    """A dependency of every write route: 403 for a browser's cross-site request."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.lower() not in ALLOWED_FETCH_SITES:
        raise _refuse(f"the browser says the request came from a {site} page")
    origin = request.headers.get("origin")
    if origin is None:
        return
    own = {request.headers.get("host", "").lower()}
    public = request.app.state.settings.public_url
    if public:
        own.add(urlsplit(public).netloc.lower())
    if origin == "null" or urlsplit(origin).netloc.lower() not in own:
        raise _refuse(f"origin {origin!r} is not this server")
