"""HTTP API: health, metrics, the read API under /api/ and the live pages."""

from newswatch.api.app import create_app
from newswatch.api.server import serve

__all__ = ["create_app", "serve"]
