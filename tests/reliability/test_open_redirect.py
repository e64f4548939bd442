"""The `?token=` login redirect stays on this server: a path that starts with `//` (or a
backslash, which browsers read as a slash) must not become a scheme-relative Location."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from sqlalchemy import Engine

from newswatch.api import create_app
from newswatch.config import Settings
from tests.api_support import running


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("//evil.example/", "/evil.example/"),
        ("///evil.example/x", "/evil.example/x"),
        # Stays percent-encoded: browsers read only a literal backslash as a slash.
        ("/%5C/evil.example/", "/%5C/evil.example/"),
        ("/sources", "/sources"),
    ],
)
def test_the_login_redirect_never_leaves_the_server(
    sqlite_engine: Engine, path: str, expected: str
) -> None:
    settings = Settings(_env_file=None, NEWSWATCH_API_TOKEN="s3cret")  # type: ignore[call-arg]
    with running(create_app(sqlite_engine, settings)) as srv:
        # A raw URL: a client's own base-URL joining would already make `//x` another host.
        response = httpx.get(f"{srv.base_url}{path}?token=s3cret&x=1", follow_redirects=False)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location == f"{expected}?x=1"
    assert urlsplit(urljoin(srv.base_url + "/", location)).netloc == urlsplit(srv.base_url).netloc
