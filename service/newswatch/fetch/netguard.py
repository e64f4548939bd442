"""The private-network guard: a hostile page must not make newswatch probe its own network.

URLs *discovered* in pages, sitemaps and feed entries are refused when they point to another
host than the source's own and that host resolves to a loopback, private, link-local,
multicast, reserved or cloud-metadata address (unless the source allows private networks).
The source's configured URL and links on its host are trusted: the operator chose them. A
redirect of the source's own fetch to another host is a discovered URL too (fetch/poll.py
`own_guard`), so a permanent redirect never moves a source where the guard would not go.
Only http and https are ever fetched. The check runs on every redirect hop.

DNS rebinding: a host can answer the guard's lookup with a public address and the
connection's own lookup, a moment later, with a private one. So the hosts the guard checked
are also checked where the connection is made: the aiohttp transport resolves through
`GuardedResolver`, which refuses any address of a guarded host that the guard would refuse
(its DNS cache is off, so every connection is resolved and checked). The set of guarded hosts
lives in a context variable that `Fetcher.get` scopes to one fetch.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

Resolver = Callable[[str], Awaitable[list[str]]]

# Names of metadata services that resolve to a link-local address only inside a cloud.
METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog"})
# Metadata addresses that are not link-local (Alibaba Cloud, AWS over IPv6).
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")}
)
DEFAULT_PORTS = {"http": 80, "https": 443}

# Hosts of the current fetch that the guard checked: their connections must reach only
# addresses the guard allows.
GUARDED_HOSTS: ContextVar[frozenset[str]] = ContextVar("guarded_hosts", default=frozenset())


class UnsafeAddress(OSError):
    """A guarded host resolved to a refused address when the connection was made."""


async def resolve(host: str) -> list[str]:
    """Every address `host` resolves to (IPv4 and IPv6), without blocking the loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def unsafe_reason(address: str) -> str | None:
    """Why connecting to `address` is refused, or None when it is a public address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"unparsable address {address!r}"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES or str(ip) == "169.254.169.254":
        return f"cloud metadata address {ip}"
    for label, flag in (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flag:
            return f"{label} address {ip}"
    if not ip.is_global:
        return f"non-public address {ip}"
    return None


def _origin(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return (parts.hostname or "").lower().rstrip("."), port


def same_host(url: str, trusted_url: str) -> bool:
    """Same host name and port as `trusted_url` (http and https default ports both count)."""
    host, port = _origin(url)
    trusted_host, trusted_port = _origin(trusted_url)
    if not host or host != trusted_host:
        return False
    return port == trusted_port or port in (80, 443)


class NetGuard:
    """`check(url)` for `Fetcher.get(check_url=...)`: a reason to refuse, or None."""

    def __init__(
        self, source_url: str, *, allow_private: bool = False, resolver: Resolver = resolve
    ):
        self.source_url = source_url
        self.allow_private = allow_private
        self.resolver = resolver

    async def check(self, url: str) -> str | None:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https"):
            return f"scheme not allowed: {parts.scheme or '(none)'}"
        if self.allow_private or same_host(url, self.source_url):
            return None
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            return "no host in URL"
        if host in METADATA_HOSTS:
            return f"unsafe address: {host} is a cloud metadata service"
        try:
            addresses = await self.resolver(host)
        except (OSError, UnicodeError) as exc:
            return f"cannot resolve {host}: {exc}"
        if not addresses:
            return f"cannot resolve {host}"
        for address in addresses:
            reason = unsafe_reason(address)
            if reason:
                return f"unsafe address: {host} resolves to a {reason}"
        GUARDED_HOSTS.set(GUARDED_HOSTS.get() | {host})
        return None

    __call__ = check


def _normal_host(host: str) -> str:
    return host.lower().rstrip(".")


def guarded_resolver() -> Any:
    """An aiohttp resolver that applies the guard to the addresses a connection will use."""
    import aiohttp
    from aiohttp.abc import AbstractResolver

    class GuardedResolver(AbstractResolver):
        def __init__(self) -> None:
            self.inner = aiohttp.DefaultResolver()

        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[Any]:
            results = await self.inner.resolve(host, port, family)
            if _normal_host(host) in GUARDED_HOSTS.get():
                for result in results:
                    reason = unsafe_reason(str(result["host"]))
                    if reason:
                        raise UnsafeAddress(
                            f"unsafe address: {host} resolved to a {reason} when connecting"
                            " (DNS rebinding?)"
                        )
            return results

        async def close(self) -> None:
            await self.inner.close()

    return GuardedResolver()
