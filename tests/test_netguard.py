"""The private-network guard and robots.txt checks, with the real resolver and a real server."""

from __future__ import annotations

import asyncio

import pytest

from newswatch.config import Settings
from newswatch.fetch.http import Fetcher
from newswatch.fetch.netguard import NetGuard, same_host, unsafe_reason
from newswatch.fetch.robots import RobotsCache
from tests.localserver import LocalServer, static


@pytest.mark.parametrize(
    ("address", "label"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.10.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("fc00::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
    ],
)
def test_unsafe_addresses(address: str, label: str):
    reason = unsafe_reason(address)
    assert reason is not None and label in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::6810:84e5", "8.8.8.8"])
def test_public_addresses_pass(address: str):
    assert unsafe_reason(address) is None


def check(guard: NetGuard, url: str) -> str | None:
    return asyncio.run(guard.check(url))


def test_other_hosts_resolving_to_loopback_are_refused_with_the_real_resolver():
    guard = NetGuard("http://127.0.0.1:8080/news/")
    assert check(guard, "http://127.0.0.1:8080/news/story") is None  # the source's own host
    assert check(guard, "https://127.0.0.1/story") is None  # same host, default port
    for url in (
        "http://localhost:8080/admin",
        "http://127.0.0.2/",
        "http://[::1]:8080/",
        "http://2130706433/",  # 127.0.0.1 as one number
        "http://127.0.0.1:22/",  # the source's host, another service on it
    ):
        reason = check(guard, url)
        assert reason and "unsafe address" in reason and "loopback" in reason, url
    assert "metadata" in (check(guard, "http://metadata.google.internal/computeMetadata/") or "")
    assert "scheme" in (check(guard, "file:///etc/passwd") or "")
    assert "scheme" in (check(guard, "gopher://127.0.0.1:25/") or "")
    assert "cannot resolve" in (check(guard, "http://no-such-host.invalid/") or "")
    assert check(NetGuard("http://a.example/", allow_private=True), "http://localhost/") is None


def test_a_host_resolving_to_any_private_address_is_refused():
    async def resolver(host: str) -> list[str]:
        return {"mixed.example": ["93.184.216.34", "10.0.0.5"], "ok.example": ["8.8.8.8"]}[host]

    guard = NetGuard("https://news.example/", resolver=resolver)
    assert "private address 10.0.0.5" in (check(guard, "https://mixed.example/x") or "")
    assert check(guard, "https://ok.example/x") is None


def test_same_host():
    assert same_host("http://Example.COM./a", "http://example.com/b")
    assert not same_host("http://example.com.evil/a", "http://example.com/")
    assert not same_host("http://sub.example.com/", "http://example.com/")


def test_robots_cache_fetches_once_per_origin_and_follows_the_rules(server: LocalServer):
    server.routes["/robots.txt"] = static(
        "User-agent: *\nDisallow: /private/\nAllow: /private/open\n\n"
        "User-agent: newswatch\nDisallow: /not-for-us\n",
        content_type="text/plain",
    )
    settings = Settings(NEWSWATCH_HTTP_MIN_HOST_DELAY=0)  # type: ignore[call-arg]

    async def run() -> list[str | None]:
        async with Fetcher(settings) as fetcher:
            robots = RobotsCache(fetcher)
            paths = ["/news/a", "/private/x", "/private/open/y", "/not-for-us", "/news/b"]
            return list(await asyncio.gather(*(robots.check(server.url(p)) for p in paths)))

    results = asyncio.run(run())
    # The agent's own group applies, not "*" (RFC 9309): /private/ is allowed for newswatch.
    assert results[0] is None and results[1] is None and results[2] is None
    assert results[3] and "robots.txt" in results[3]
    assert results[4] is None
    assert len(server.hits("/robots.txt")) == 1


@pytest.mark.parametrize(("status", "allowed"), [(404, True), (410, True), (500, False)])
def test_missing_robots_allows_and_failing_robots_forbids(server: LocalServer, status, allowed):
    server.routes["/robots.txt"] = static("x", status=status, content_type="text/plain")
    settings = Settings(NEWSWATCH_HTTP_MIN_HOST_DELAY=0)  # type: ignore[call-arg]

    async def run() -> str | None:
        async with Fetcher(settings) as fetcher:
            return await RobotsCache(fetcher).check(server.url("/news/a"))

    reason = asyncio.run(run())
    assert (reason is None) == allowed
    if not allowed:
        assert reason and "unreachable" in reason


@pytest.mark.parametrize(("robots", "gap"), [("Crawl-delay: 3", 3.0), ("Crawl-delay: 3600", 60.0)])
def test_crawl_delay_spaces_the_hosts_requests(server: LocalServer, robots: str, gap: float):
    server.routes["/robots.txt"] = static(
        f"User-agent: *\nDisallow: /private/\n{robots}\n", content_type="text/plain"
    )
    settings = Settings(NEWSWATCH_HTTP_MIN_HOST_DELAY=0)  # type: ignore[call-arg]

    async def run() -> tuple[float, float, str | None]:
        async with Fetcher(settings) as fetcher:
            before = fetcher.gate(server.url("/news/a")).min_delay
            reason = await RobotsCache(fetcher).check(server.url("/news/a"))
            return before, fetcher.gate(server.url("/news/b")).min_delay, reason

    before, after, reason = asyncio.run(run())
    # The host's gate now spaces request starts by the Crawl-delay (capped), for every request.
    assert (before, after, reason) == (0.0, gap, None)


def test_a_configured_delay_longer_than_crawl_delay_stays(server: LocalServer):
    server.routes["/robots.txt"] = static(
        "User-agent: *\nCrawl-delay: 1\n", content_type="text/plain"
    )
    settings = Settings(NEWSWATCH_HTTP_MIN_HOST_DELAY=5)  # type: ignore[call-arg]

    async def run() -> float:
        async with Fetcher(settings) as fetcher:
            await RobotsCache(fetcher).check(server.url("/news/a"))
            return fetcher.gate(server.url("/news/a")).min_delay

    assert asyncio.run(run()) == 5.0


def test_a_host_that_rebinds_to_loopback_after_the_check_is_refused_when_connecting(
    server: LocalServer,
):
    """DNS rebinding: the guard's lookup of the discovered host says public, the connection's
    own lookup (the real resolver: localhost is 127.0.0.1) says loopback. The connection is
    refused and the server never sees the request; the source's own host and a fetch after
    it are not affected."""
    server.routes["/admin"] = static("secret", content_type="text/plain")
    server.routes["/news/"] = static("front page", content_type="text/plain")
    port = server.port
    rebinding = f"http://localhost:{port}/admin"

    async def first_answer_public(host: str) -> list[str]:
        return ["93.184.216.34"]

    guard = NetGuard(server.url("/news/"), resolver=first_answer_public)
    settings = Settings(NEWSWATCH_HTTP_MIN_HOST_DELAY=0)  # type: ignore[call-arg]

    async def run() -> tuple[str | None, object, object, object]:
        async with Fetcher(settings) as fetcher:
            assert await guard.check(rebinding) is None  # the check alone is fooled
            refused = await fetcher.get(rebinding, check_url=[guard])
            own = await fetcher.get(server.url("/news/"), check_url=[guard])
            # A fetch without the guard (an operator's configured source) reaches it.
            trusted = await fetcher.get(rebinding)
            return refused.error, refused.outcome, own.outcome, trusted.outcome

    error, outcome, own, trusted = asyncio.run(run())
    assert outcome == "blocked", error
    assert error and "loopback" in error and "when connecting" in error
    assert own == "ok" and trusted == "ok"
    assert len(server.hits("/admin")) == 1  # only the unguarded fetch arrived


def test_the_httpx_transport_still_checks_urls_before_requesting(server: LocalServer):
    server.routes["/admin"] = static("secret", content_type="text/plain")
    settings = Settings(NEWSWATCH_HTTP_MIN_HOST_DELAY=0, NEWSWATCH_HTTP_TRANSPORT="httpx")  # type: ignore[call-arg]
    port = server.port

    async def run() -> str | None:
        async with Fetcher(settings) as fetcher:
            guard = NetGuard("http://news.example/")
            return (await fetcher.get(f"http://localhost:{port}/admin", check_url=[guard])).error

    error = asyncio.run(run())
    assert error and "loopback" in error
    assert server.hits("/admin") == []
