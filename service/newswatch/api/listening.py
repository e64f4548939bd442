"""The HTTP port: binding it, and the line that says where the service listens. Apart from
the server (api/server.py) so that the service's process, which binds the port for its API
process and probe front (api/process.py), does not import the web framework."""

from __future__ import annotations

import socket

from newswatch.log import get_logger

log = get_logger(__name__)

BACKLOG = 2048  # connections the kernel queues while the front starts or is busy


def listen(host: str, port: int) -> socket.socket:
    """The listening socket for the front to accept on; RuntimeError when it cannot bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        raise RuntimeError(f"HTTP server could not start on {host}:{port}: {exc}") from exc
    return sock  # not inheritable: pass_fds hands it to the front alone


def log_listening(host: str, port: int | None, token_required: bool) -> None:
    url = page_url(host, port)
    log.info(
        "http server listening",
        host=host,
        port=port,
        web_page=url,
        token=token_hint(url, token_required),
    )


def page_url(host: str, port: int | None) -> str:
    """The address to open in a browser: a wildcard host means this machine."""
    if host in ("", "0.0.0.0", "::"):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def token_hint(url: str, required: bool) -> str:
    if required:
        return f"open {url}?token=<NEWSWATCH_API_TOKEN> once; the browser keeps it"
    return "none: NEWSWATCH_API_TOKEN is not set, anyone who reaches the port can read"
