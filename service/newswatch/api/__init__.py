"""HTTP API: health, metrics, the read API under /api/ and the live pages.

`create_app` and `serve` are imported on first use: the probe front (api/front.py) is a
module of this package and must start without the web framework."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from newswatch.api.app import create_app
    from newswatch.api.server import serve

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from newswatch.api.app import create_app

        return create_app
    if name == "serve":
        from newswatch.api.server import serve

        return serve
    raise AttributeError(f"module 'newswatch.api' has no attribute {name!r}")
