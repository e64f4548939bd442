"""A polite HTTP client: conditional GET, size and time limits, per-host limits, Retry-After.

One `Fetcher` per process. It never raises for what a server does: every outcome, good or bad,
comes back as a `FetchResult` whose `outcome` says what happened, so callers record it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, TypeAlias, cast
from urllib.parse import urljoin, urlsplit

import httpx

from newswatch.clock import MONOTONIC, Clock, Timer
from newswatch.config import Settings
from newswatch.fetch.netguard import GUARDED_HOSTS, UnsafeAddress, guarded_resolver
from newswatch.prometheus_registry import HOST_QUEUE_SECONDS, HOST_QUEUE_WAITING
from newswatch.shared_types import FetchOutcome

if TYPE_CHECKING:
    import aiohttp

# A check run on every URL before it is requested: a reason to refuse it, or None.
URLCheck: TypeAlias = Callable[[str], Awaitable[str | None] | str | None]

REDIRECT_STATUSES = {301, 302, 303, 307, 308}
PERMANENT_REDIRECTS = {301, 308}
MAX_REDIRECTS = 5
# Retry-After values past this are taken as a mistake or an attack on our schedule.
MAX_RETRY_AFTER = 24 * 3600.0


@dataclass
class FetchResult:
    url: str  # the URL asked for
    final_url: str  # after redirects
    outcome: FetchOutcome  # also the `outcome` column of the fetch log
    status: int | None = None
    body: bytes = b""
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    error: str | None = None
    permanent_redirect: str | None = None  # new URL to store, if every hop was permanent
    retry_after: float | None = None  # seconds, from a 429/503
    duration: float = 0.0  # on the wire: from sending the first request to the last answer
    queued: float = 0.0  # waiting for the host's turn (politeness), before any request was sent
    bytes_read: int = 0  # bytes on the wire (before decompression) are not exposed by httpx

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        return self.headers.get("last-modified")

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)


# The fairness key of the fetches made in this context: a poll sets it to its source, so
# every fetch of that poll (the feed, its article pages, robots.txt) takes that source's turns.
QUEUE_KEY: ContextVar[str | None] = ContextVar("newswatch_queue_key", default=None)


@dataclass(order=True)
class _Waiter:
    round: int  # the key's turn: its first waiter is served in the next round, its second after
    seq: int  # arrival order within a round
    key: str = field(compare=False)
    released: asyncio.Future[None] = field(compare=False)


class HostGate:
    """Per-host politeness: at most N requests at once, a minimum gap between request starts,
    and no request before a host's Retry-After has passed; the waiters served in turn.

    Waiters queue per key (the source polling; the URL when there is none) and the keys take
    turns (start-time fair queuing: a key's n-th waiter is served in the n-th round from when it
    came), so a source's many article pages cannot starve the host's other sources; with one
    waiter per key it is first come, first served. A start is reserved only at the moment a
    request goes (its task runs on, released): a waiter that gives up takes nothing with it,
    the next start is never more than one gap ahead of the clock, and a busy event loop that
    wakes a released waiter late cannot squeeze the gap on the wire
    (docs/decisions/0011-fair-host-queue.md).

    `places`, shared by every host's gate, bounds the requests under way in the process
    (NEWSWATCH_HTTP_MAX_CONNECTIONS). A request takes its place only once its host released
    it, so requests waiting for a busy host hold none and other hosts' requests go meanwhile;
    and before its start is stamped, the host's next release held back, so waiting for a place
    never squeezes the gap on the wire (docs/decisions/0111-global-bound-after-host-gate.md).
    """

    def __init__(
        self,
        concurrency: int,
        min_delay: float,
        clock: Clock = MONOTONIC,
        places: asyncio.Semaphore | None = None,
    ):
        self.clock = clock
        self._places = places
        self._slots = max(1, concurrency)
        self._active = 0  # released and not yet done, including the one about to start
        self._starting = False  # a waiter is released and has not run on yet
        self._min_delay = min_delay
        self._last_start: float | None = None
        self.blocked_until = 0.0
        self._queue: list[_Waiter] = []  # a heap; waiters that gave up are skipped when popped
        self._round = 0  # the round of the waiter released last
        self._last_round: dict[str, int] = {}  # per key with waiters: the round of its last
        self._pending: dict[str, int] = {}  # per key: waiters in the queue
        self._seq = itertools.count()
        self._timer: Timer | None = None

    @property
    def min_delay(self) -> float:
        return self._min_delay

    @property
    def next_start(self) -> float:
        """The earliest moment the next request may be released."""
        after_last = -math.inf if self._last_start is None else self._last_start + self._min_delay
        return max(after_last, self.blocked_until)

    @property
    def waiting(self) -> int:
        return sum(self._pending.values())

    @property
    def active(self) -> int:
        return self._active

    def slow_to(self, seconds: float) -> None:
        """At least `seconds` between request starts from now on (a site's Crawl-delay)."""
        self._min_delay = max(self._min_delay, seconds)

    def block_for(self, seconds: float) -> None:
        self.blocked_until = max(self.blocked_until, self.clock.now() + seconds)

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        """Wait for this host's next free start, in `key`'s turn; hold a slot while inside."""
        await self._acquire(key)
        try:
            yield
        finally:
            self._active -= 1
            if self._places is not None:
                self._places.release()
            self._release_due()

    async def _acquire(self, key: str) -> None:
        asked = self.clock.now()
        turn = max(self._round, self._last_round.get(key, 0)) + 1
        waiter = _Waiter(turn, next(self._seq), key, asyncio.get_running_loop().create_future())
        self._last_round[key] = turn
        self._pending[key] = self._pending.get(key, 0) + 1
        heapq.heappush(self._queue, waiter)
        HOST_QUEUE_WAITING.inc()
        self._release_due()
        try:
            await waiter.released
            if self._places is not None:
                # Still "starting" (no other release of this host): this wait is host wait.
                await self._places.acquire()
        except asyncio.CancelledError:
            self._withdraw(waiter)
            raise
        # The request starts now: the gap to the next one counts from here.
        self._starting = False
        self._last_start = self.clock.now()
        HOST_QUEUE_SECONDS.observe(self._last_start - asked)
        self._release_due()

    def cancel_waiting(self) -> int:
        """Cancel the requests waiting for their turn (they have sent nothing); say how many."""
        waiting = [w for w in self._queue if not w.released.done()]
        for waiter in waiting:
            waiter.released.cancel()  # its task withdraws it (_withdraw) as it wakes
        return len(waiting)

    def _withdraw(self, waiter: _Waiter) -> None:
        """A waiter gave up (cancelled): it leaves the queue, or, released already (waiting
        for a place or woken in the same instant), gives its slot back; it had taken no
        start: no time is held for a request not sent."""
        if waiter.released.cancelled():
            self._forget(waiter.key)  # its entry stays in the heap, skipped when popped
        else:
            self._starting = False
            self._active -= 1
        self._release_due()

    def _forget(self, key: str) -> None:
        HOST_QUEUE_WAITING.dec()
        self._pending[key] -= 1
        if not self._pending[key]:
            del self._pending[key]
            del self._last_round[key]

    def _release_due(self) -> None:
        """Release waiters while a slot is free and the gap has passed; else set a timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # One release at a time: the next waits for the released one to start (and the gap).
        while self._active < self._slots and not self._starting:
            while self._queue and self._queue[0].released.done():
                heapq.heappop(self._queue)  # gave up (already forgotten)
            if not self._queue:
                return
            now = self.clock.now()
            start = self.next_start
            if start > now:
                self._timer = self.clock.call_at(start, self._on_timer)
                return
            waiter = heapq.heappop(self._queue)
            self._forget(waiter.key)
            self._round = waiter.round
            self._active += 1
            self._starting = True
            waiter.released.set_result(None)

    def _on_timer(self) -> None:
        self._timer = None
        self._release_due()


def host_key(url: str) -> str:
    parts = urlsplit(url)
    return (parts.hostname or "").lower() + (f":{parts.port}" if parts.port else "")


def make_transport(kind: str, max_connections: int) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    if kind == "aiohttp":
        # The aiohttp transport keeps the httpx API and is several times faster at high
        # concurrency (encode/httpx#3215; figures in docs/benchmarks.md).
        from httpx_aiohttp import AiohttpTransport

        # The TLS context is made now: loading the CA bundle inside the first request would
        # hold up that request, and the host's next one behind it.
        tls = httpx.create_ssl_context()
        # Given the context, the transport does not load the CA bundle a second time.
        return AiohttpTransport(
            verify=tls, limits=limits, client=lambda: _aiohttp_session(limits, tls)
        )
    # httpx's own transport has no resolver hook: the private-network guard checks each URL
    # before it is requested, but cannot re-check the connection's own lookup.
    return httpx.AsyncHTTPTransport(limits=limits)


def _aiohttp_session(limits: httpx.Limits, tls: ssl.SSLContext) -> aiohttp.ClientSession:
    """The aiohttp session of the transport (as httpx-aiohttp builds it), resolving through
    the private-network guard with its DNS cache off (see fetch/netguard.py)."""
    import aiohttp

    connector = aiohttp.TCPConnector(
        limit=limits.max_connections or 0,
        keepalive_timeout=limits.keepalive_expiry,
        ssl=tls,
        resolver=guarded_resolver(),
        use_dns_cache=False,
    )
    return aiohttp.ClientSession(connector=connector)


class Fetcher:
    def __init__(
        self,
        settings: Settings,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = MONOTONIC,
    ):
        self.settings = settings
        self.clock = clock
        self.max_body = settings.http_max_body_bytes
        self.timeout = httpx.Timeout(
            connect=settings.http_connect_timeout,
            read=settings.http_read_timeout,
            write=settings.http_read_timeout,
            pool=None,
        )
        # A server that trickles bytes never trips the read timeout; this caps the time the
        # fetch's requests take (all hops together; waiting for a host's turn is no part of it).
        self.deadline = settings.http_connect_timeout + 2 * settings.http_read_timeout
        # Requests go straight to the transport, not through httpx.AsyncClient: the client's
        # layer (URL merging, default headers, auth, cookies, redirects: we follow redirects
        # ourselves and keep no cookies) cost about as much CPU as aiohttp's own request
        # (docs/decisions/0184-requests-straight-to-the-transport.md).
        self._transport = transport or make_transport(
            settings.http_transport, settings.http_max_connections
        )
        self._headers = {"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"}
        self._extensions = {"timeout": self.timeout.as_dict()}
        self._gates: dict[str, HostGate] = {}
        # Requests under way, all hosts together: taken inside the host gates (HostGate).
        self._places = asyncio.Semaphore(max(1, settings.http_max_connections))

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def cancel_waiting(self) -> int:
        """Cancel every fetch still waiting for its host's turn (at shutdown: they have sent
        nothing, so nothing is lost; their sources are due first after a restart)."""
        return sum(gate.cancel_waiting() for gate in self._gates.values())

    def gate(self, url: str) -> HostGate:
        key = host_key(url)
        gate = self._gates.get(key)
        if gate is None:
            gate = HostGate(
                self.settings.http_per_host_concurrency,
                self.settings.http_min_host_delay,
                self.clock,
                self._places,
            )
            self._gates[key] = gate
        return gate

    async def get(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: str | None = None,
        check_url: Iterable[URLCheck] = (),
    ) -> FetchResult:
        """GET `url`, following redirects, politely; never raises for network or server faults.

        `check_url`: callables `(url) -> str | None` run on every URL before it is requested
        (robots.txt, address safety); a returned string blocks the request with that reason.
        """
        headers: dict[str, str] = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        if accept:
            headers["Accept"] = accept
        # The hosts the private-network guard checks are guarded for this fetch only.
        guarded = GUARDED_HOSTS.set(frozenset())
        try:
            return await self._follow(url, headers, list(check_url))
        finally:
            GUARDED_HOSTS.reset(guarded)

    async def _follow(
        self, url: str, headers: dict[str, str], checks: list[URLCheck]
    ) -> FetchResult:
        current = url
        all_permanent = True
        queued = spent = 0.0
        for _hop in range(MAX_REDIRECTS + 1):
            if not current.lower().startswith(("http://", "https://")):
                return FetchResult(
                    url, current, FetchOutcome.BLOCKED, error=f"scheme not allowed: {current[:80]}"
                )
            for check in checks:
                reason = await _maybe_await(check(current))
                if reason:
                    return FetchResult(url, current, FetchOutcome.BLOCKED, error=reason)
            gate = self.gate(current)
            wait = gate.blocked_until - gate.clock.now()
            if wait > self.deadline:
                # The host asked everyone to wait (Retry-After) longer than a fetch may take:
                # say so now instead of holding the poll (and its source's turn) for hours.
                return FetchResult(
                    url,
                    current,
                    FetchOutcome.RATE_LIMITED,
                    error=f"host asked to wait {wait:.0f}s more (Retry-After)",
                    retry_after=wait,
                )
            asked = time.monotonic()
            async with gate.turn(QUEUE_KEY.get() or url):
                sent = time.monotonic()
                result = await self._request_within(self.deadline - spent, url, current, headers)
            spent += time.monotonic() - sent
            queued += sent - asked
            result.duration, result.queued = spent, queued
            if result.retry_after is not None:
                gate.block_for(result.retry_after)
            if result.status in REDIRECT_STATUSES and result.outcome == FetchOutcome.HTTP_ERROR:
                location = result.headers.get("location")
                if not location:
                    result.error = f"HTTP {result.status} without Location"
                    return result
                all_permanent = all_permanent and result.status in PERMANENT_REDIRECTS
                current = urljoin(current, location.strip())
                continue
            if current != url and all_permanent:
                result.permanent_redirect = current
            return result
        return FetchResult(
            url, current, FetchOutcome.HTTP_ERROR, error=f"more than {MAX_REDIRECTS} redirects"
        )

    async def _request_within(
        self, budget: float, url: str, current: str, headers: dict[str, str]
    ) -> FetchResult:
        """One request, given what is left of the fetch's deadline (from when it is sent)."""
        try:
            async with asyncio.timeout(budget):
                return await self._request_once(url, current, headers)
        except TimeoutError:
            return FetchResult(
                url,
                current,
                FetchOutcome.TIMEOUT,
                error=f"no complete answer in {self.deadline:g}s",
            )

    @contextlib.asynccontextmanager
    async def _send(self, url: str, headers: dict[str, str]) -> AsyncIterator[httpx.Response]:
        """One GET through the transport; the answer's body is read (or not) inside."""
        request = httpx.Request(
            "GET", url, headers={**self._headers, **headers}, extensions=self._extensions
        )
        response = await self._transport.handle_async_request(request)
        try:
            yield response
        finally:
            await response.aclose()

    async def _request_once(self, url: str, current: str, headers: dict[str, str]) -> FetchResult:
        try:
            async with self._send(current, headers) as response:
                status = response.status_code
                result = FetchResult(
                    url, current, FetchOutcome.OK, status=status, headers=response.headers
                )
                if status == 304:
                    result.outcome = FetchOutcome.NOT_MODIFIED
                    return result
                if status in (429, 503):
                    result.outcome = FetchOutcome.RATE_LIMITED
                    result.retry_after = parse_retry_after(response.headers.get("retry-after"))
                    result.error = f"HTTP {status}"
                    return result
                if status >= 300:
                    result.outcome = FetchOutcome.HTTP_ERROR
                    result.error = f"HTTP {status}"
                    return result
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self.max_body:
                    result.outcome = FetchOutcome.TOO_LARGE
                    result.error = (
                        f"Content-Length {declared} over the limit of {self.max_body} bytes"
                    )
                    return result
                chunks: list[bytes] = []
                size = 0
                # aiter_bytes decompresses as it goes: counting here stops gzip bombs too.
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_body:
                        result.outcome = FetchOutcome.TOO_LARGE
                        result.error = f"body over the limit of {self.max_body} bytes"
                        return result
                    chunks.append(chunk)
                result.body = b"".join(chunks)
                result.bytes_read = size
                return result
        except httpx.TimeoutException as exc:
            unsafe = _unsafe(exc)
            if unsafe is not None:
                return FetchResult(url, current, FetchOutcome.BLOCKED, error=str(unsafe))
            if _refused(exc):
                return FetchResult(
                    url, current, FetchOutcome.NETWORK_ERROR, error=f"cannot connect: {exc}"
                )
            return FetchResult(
                url, current, FetchOutcome.TIMEOUT, error=f"timeout: {exc or type(exc).__name__}"
            )
        except httpx.DecodingError as exc:
            return FetchResult(
                url, current, FetchOutcome.NETWORK_ERROR, error=f"bad content encoding: {exc}"
            )
        except (httpx.HTTPError, OSError) as exc:
            unsafe = _unsafe(exc)
            if unsafe is not None:
                return FetchResult(url, current, FetchOutcome.BLOCKED, error=str(unsafe))
            return FetchResult(
                url, current, FetchOutcome.NETWORK_ERROR, error=f"{type(exc).__name__}: {exc}"
            )


def _unsafe(exc: BaseException) -> UnsafeAddress | None:
    """The guard's refusal at connection time, wherever the transport wrapped it."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return None
        if isinstance(seen, UnsafeAddress):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _refused(exc: BaseException) -> bool:
    """httpx-aiohttp reports a refused connection as ConnectTimeout; tell them apart."""
    cause = exc.__cause__
    if cause is None:
        return False
    import aiohttp

    return isinstance(cause, aiohttp.ClientConnectorError) and not isinstance(
        cause, aiohttp.ServerTimeoutError | TimeoutError
    )


async def _maybe_await(value: Awaitable[str | None] | str | None) -> str | None:
    if asyncio.iscoroutine(value):
        return await value
    return cast("str | None", value)


def backoff_delay(
    consecutive_errors: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Delay before retrying a failing source: exponential, capped, with full jitter on the
    upper half so many failing sources do not retry in lockstep."""
    if consecutive_errors <= 0:
        return 0.0
    ceiling = min(cap, base * 2 ** (consecutive_errors - 1))
    r = (rng or random).random()
    return ceiling / 2 + r * ceiling / 2
