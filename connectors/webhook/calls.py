"""One delivery's calls to the subscriber's endpoint, until one is accepted or the budget ends.

A ``2xx`` accepts the delivery. ``410 Gone`` says the endpoint is gone for good: the sink stops
(:class:`EndpointGone`) rather than turn every later delivery into a dead letter. Anything else
(another status, a timeout, a connection failure, a redirect to an address that may not be
called) is a failed attempt: the next waits as :mod:`.endpoint` says, and once the retry
budget is spent the caller is told so and writes the dead letter. Redirects are followed here,
not by the HTTP client, so that every target is checked before it is called; the same signed
body is POSTed again to it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin

import httpx
import structlog

from connectors.webhook import metrics
from connectors.webhook.endpoint import (
    EndpointRefused,
    Resolver,
    backoff,
    check_target,
    resolve,
    retry_after,
)
from connectors.webhook.signing import Signer
from streams.settings import Settings

log = structlog.get_logger(__name__)
CONTENT_TYPE = "application/cloudevents+json"
MAX_REDIRECTS = 5
GONE = 410

Answer = int | str
"""An HTTP status, or a word when no status came: timeout, connection, refused, redirects."""


class EndpointGone(Exception):
    """The endpoint answered 410 Gone: it is disabled until the contract or the endpoint is
    fixed."""

    def __init__(self, contract_id: str) -> None:
        super().__init__(f"the webhook endpoint of contract {contract_id} answered 410 Gone: "
                         f"it is disabled, and the sink committed nothing past the delivery "
                         f"it refused")
        self.contract_id = contract_id


@dataclass(frozen=True)
class Policy:
    """How long one call may take, how many calls a delivery gets, how long between them."""

    attempts: int
    first_wait: float
    max_wait: float
    timeout: float
    allow_private: bool

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(settings.webhook_attempts, settings.webhook_backoff_s,
                   settings.webhook_backoff_max_s, settings.webhook_timeout_s,
                   settings.webhook_allow_private)


@dataclass(frozen=True)
class Outcome:
    """What became of one delivery: accepted, or refused by its last answer."""

    accepted: bool
    attempts: int
    last: Answer | None = None


@dataclass
class Caller:
    """Calls one contract's endpoint for one delivery at a time."""

    contract_id: str
    url: str
    signer: Signer
    policy: Policy
    client: httpx.AsyncClient
    resolver: Resolver = resolve
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)

    async def deliver(self, delivery_id: str, body: str) -> Outcome:
        """Call until a ``2xx`` or the budget's end; :class:`EndpointGone` on a ``410``."""
        answer: Answer = "none"
        for attempt in range(self.policy.attempts):
            answer, wait_asked = await self._call(delivery_id, body)
            if isinstance(answer, int) and 200 <= answer < 300:
                metrics.DELIVERED.labels(self.contract_id).inc()
                return Outcome(True, attempt + 1)
            metrics.FAILURES.labels(self.contract_id, str(answer)).inc()
            if answer == GONE:
                metrics.DISABLED.labels(self.contract_id).set(1)
                log.error("webhook endpoint gone: sink disabled", contract=self.contract_id)
                raise EndpointGone(self.contract_id)
            log.warning("webhook call failed", contract=self.contract_id, answer=answer,
                        attempt=attempt + 1, of=self.policy.attempts)
            if attempt + 1 < self.policy.attempts:
                await self.sleep(wait_asked if wait_asked is not None else backoff(
                    attempt, self.policy.first_wait, self.policy.max_wait, self.rng))
        return Outcome(False, self.policy.attempts, answer)

    async def _call(self, delivery_id: str, body: str) -> tuple[Answer, float | None]:
        """One call, following redirects to targets that may be called: the answer and the
        wait it asks for."""
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                await check_target(url, self.policy.allow_private, self.resolver)
            except EndpointRefused as exc:
                log.warning("webhook target refused", contract=self.contract_id,
                            reason=exc.reason)
                return "refused", None
            response = await self._post(url, delivery_id, body)
            if isinstance(response, str):
                return response, None
            location = response.headers.get("location")
            if response.is_redirect and location:
                url = urljoin(url, location)
                continue
            return response.status_code, retry_after(
                response.status_code, response.headers.get("retry-after"),
                self.policy.max_wait)
        return "redirects", None

    async def _post(self, url: str, delivery_id: str, body: str) -> httpx.Response | str:
        """POST the signed body once; the response, or a word when none came."""
        headers = {"content-type": CONTENT_TYPE,
                   **self.signer.headers(delivery_id, datetime.now(UTC), body)}
        started = time.perf_counter()
        try:
            return await self.client.post(url, content=body.encode("utf-8"), headers=headers,
                                          timeout=self.policy.timeout)
        except httpx.TimeoutException:
            return "timeout"
        except httpx.TransportError:
            return "connection"
        finally:
            metrics.LATENCY.labels(self.contract_id).observe(time.perf_counter() - started)
