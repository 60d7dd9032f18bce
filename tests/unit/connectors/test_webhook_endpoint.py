"""Where a webhook may go (public addresses only, after resolution) and how long the sink waits
between calls (exponential with full jitter, or what Retry-After asks), without any network."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpcore
import httpx
import pytest

from connectors.webhook.endpoint import (
    CheckedConnections,
    EndpointRefused,
    backoff,
    check_target,
    checked_transport,
    retry_after,
)


def _resolving_to(*addresses: str):  # type: ignore[no-untyped-def]
    async def resolver(host: str, port: int) -> Iterable[str]:
        return addresses
    return resolver


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "224.0.0.1",
])
async def test_a_non_public_address_is_refused(address: str) -> None:
    with pytest.raises(EndpointRefused) as refused:
        await check_target("https://hooks.lyon.example/in", False, _resolving_to(address))
    assert refused.value.field == "delivery.webhook.url"
    assert address not in str(refused.value)
    assert "hooks.lyon.example" not in str(refused.value)


async def test_one_private_address_among_public_ones_is_refused() -> None:
    with pytest.raises(EndpointRefused):
        await check_target("https://hooks.lyon.example/in", False,
                           _resolving_to("93.184.216.34", "10.0.0.5"))


async def test_a_public_address_is_called() -> None:
    await check_target("https://hooks.lyon.example/in", False,
                       _resolving_to("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"))


async def test_a_literal_private_address_is_refused_without_dns() -> None:
    with pytest.raises(EndpointRefused):
        await check_target("https://127.0.0.1:8443/in", False)


async def test_plain_http_is_refused_in_production() -> None:
    with pytest.raises(EndpointRefused, match="https"):
        await check_target("http://hooks.lyon.example/in", False,
                           _resolving_to("93.184.216.34"))


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    async def failing(host: str, port: int) -> Iterable[str]:
        raise OSError("no such host")
    with pytest.raises(EndpointRefused, match="does not resolve"):
        await check_target("https://hooks.lyon.example/in", False, failing)


async def test_the_development_setting_allows_loopback_and_http() -> None:
    await check_target("http://127.0.0.1:8080/in", True, _resolving_to("127.0.0.1"))


def test_backoff_doubles_its_bound_up_to_the_cap() -> None:
    highest = random.Random()
    highest.uniform = lambda low, high: high  # type: ignore[method-assign]
    assert [backoff(n, 0.5, 10.0, highest) for n in range(7)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_backoff_is_jittered_below_its_bound() -> None:
    rng = random.Random(7)
    waits = [backoff(3, 0.5, 60.0, rng) for _ in range(200)]
    assert all(0.0 <= wait <= 4.0 for wait in waits)
    assert len(set(waits)) == 200, "every sink would retry in step"


def test_backoff_survives_a_huge_attempt_number() -> None:
    assert backoff(10_000, 0.5, 60.0, random.Random(1)) <= 60.0


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_is_honoured_on_throttling(status: int) -> None:
    assert retry_after(status, "7", 60.0) == 7.0


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after(429, header, 60.0, now) == 30.0


def test_retry_after_is_capped() -> None:
    assert retry_after(503, "86400", 60.0) == 60.0


@pytest.mark.parametrize(("status", "header"), [(500, "7"), (429, None), (429, "soon"),
                                                (200, "7")])
def test_retry_after_asks_nothing_otherwise(status: int, header: str | None) -> None:
    assert retry_after(status, header, 60.0) is None


async def test_a_connection_goes_only_to_an_address_checked_for_it() -> None:
    """DNS rebinding: the name answers a public address to the check before the call, then a
    private one when the connection is opened; the connection is refused, nothing is opened."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> Iterable[str]:
        return next(answers)

    backend = CheckedConnections(False, rebinding)
    await check_target("https://hooks.lyon.example/in", False, rebinding)
    with pytest.raises(httpcore.ConnectError, match="non-public"):
        await backend.connect_tcp("hooks.lyon.example", 443)


async def test_the_client_s_connections_are_checked() -> None:
    """Through httpx, as the sink calls: a loopback address is never connected to."""
    async with httpx.AsyncClient(transport=checked_transport(False)) as client:
        with pytest.raises(httpx.ConnectError, match="non-public"):
            await client.post("http://127.0.0.1:9/in", content=b"{}")
