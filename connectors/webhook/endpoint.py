"""Where a webhook call may go, and how long to wait before calling again.

An endpoint named in a contract is checked where the call would really go: after DNS
resolution, and again for every redirect target, since a public name may resolve to, or
redirect to, an address inside the bus's own network (its broker, its registry, a cloud
metadata service). Only globally routable addresses are called, over https, unless the
development setting ``webhook_allow_private`` allows private ones and plain http. The check
before a call gives a clear refusal; the connection itself goes only to an address it resolved
and checked (:class:`CheckedConnections`), so that a name answering a public address to the
check and a private one to the connection (DNS rebinding) reaches nothing inside.

Waits are exponential with full jitter (a random wait below the doubled bound, as AWS's
architecture note on backoff recommends), so that many sinks failing together do not retry in
step; an endpoint's own ``Retry-After`` on 429 and 503 wins, within the same upper bound.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

URL_FIELD = "delivery.webhook.url"
THROTTLING = frozenset({429, 503})
"""The answers whose ``Retry-After`` the sink honours."""

Resolver = Callable[[str, int], Awaitable[Iterable[str]]]
"""host, port → the addresses a connection could go to."""


class EndpointRefused(Exception):
    """The endpoint may not be called; names the contract field and why, never the URL."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{URL_FIELD}: {reason}")
        self.field = URL_FIELD
        self.reason = reason


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, as the connection would find it."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check_target(url: str, allow_private: bool, resolver: Resolver = resolve) -> None:
    """Refuse ``url`` unless every address its host resolves to may be called."""
    parts = urlsplit(url)
    allowed_schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed_schemes or not parts.hostname:
        raise EndpointRefused("the endpoint must be an https:// URL")
    if allow_private:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = list(await resolver(parts.hostname, port))
    except OSError:
        raise EndpointRefused("the endpoint's host name does not resolve") from None
    if not addresses:
        raise EndpointRefused("the endpoint's host name does not resolve")
    if not all(_public(address) for address in addresses):
        raise EndpointRefused("the endpoint resolves to a private, loopback, link-local or "
                              "otherwise non-public address (allowed in development only, "
                              "with CIRCULATION_WEBHOOK_ALLOW_PRIVATE)")


class CheckedConnections(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to addresses it resolved itself and found public; TLS still
    verifies the certificate against the host name (httpcore passes it apart)."""

    def __init__(self, allow_private: bool, resolver: Resolver = resolve) -> None:
        self._allow_private = allow_private
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        if self._allow_private:
            return await self._inner.connect_tcp(host, port, timeout, local_address,
                                                 socket_options)
        try:
            addresses = list(await self._resolver(host, port))
        except OSError:
            raise httpcore.ConnectError("the endpoint's host name does not resolve") from None
        if not addresses or not all(_public(address) for address in addresses):
            raise httpcore.ConnectError("the endpoint resolves to a non-public address")
        return await self._inner.connect_tcp(addresses[0], port, timeout, local_address,
                                             socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def checked_transport(allow_private: bool, resolver: Resolver = resolve,
                      ) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections go through :class:`CheckedConnections`.

    httpx takes no network backend: the one of the connection pool it builds is replaced.
    """
    transport = httpx.AsyncHTTPTransport()
    pool = transport._pool
    if not isinstance(pool, httpcore.AsyncConnectionPool):  # pragma: no cover - no proxy here
        raise TypeError("an httpx transport without a plain connection pool")
    pool._network_backend = CheckedConnections(allow_private, resolver)
    return transport


def _public(address: str) -> bool:
    """Whether ``address`` is globally routable (an IPv4-mapped IPv6 address as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def backoff(attempt: int, first: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (0 for the first): drawn
    uniformly below ``first * 2**attempt``, never above ``cap``."""
    bound = min(cap, first * 2.0 ** min(attempt, 62))
    return rng.uniform(0.0, bound)


def retry_after(status: int, header: str | None, cap: float,
                now: datetime | None = None) -> float | None:
    """Seconds a 429 or 503 asks to wait (``Retry-After`` in seconds or as an HTTP date),
    at most ``cap``; None when the answer asks nothing or cannot be read."""
    if status not in THROTTLING or header is None:
        return None
    text = header.strip()
    if text.isdigit():
        return min(cap, float(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(cap, max(0.0, (when - (now or datetime.now(UTC))).total_seconds()))
