"""One delivery's calls, against an endpoint simulated in memory (httpx.MockTransport): accepted
on a 2xx, retried with the same id, waits as asked by Retry-After, stopped by 410, given up
after the budget, redirects checked before they are followed."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Iterable

import httpx
import pytest
from standardwebhooks import Webhook

from connectors.webhook import metrics
from connectors.webhook.calls import CONTENT_TYPE, Caller, EndpointGone, Outcome, Policy
from connectors.webhook.signing import Signer

SECRET = "whsec_" + base64.b64encode(b"lyon-secret-of-thirty-two-bytes!").decode()
URL = "https://hooks.lyon.example/in"
BODY = '{"id":"dlv-1"}'
POLICY = Policy(attempts=4, first_wait=0.5, max_wait=30.0, timeout=1.0, allow_private=False)


async def _public(host: str, port: int) -> Iterable[str]:
    return ["127.0.0.1"] if host == "internal.lyon.example" else ["93.184.216.34"]


class Endpoint:
    """Answers calls from a script, recording each request."""

    def __init__(self, *answers: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0)(request)


def _status(code: int, **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(code, headers=headers)


def _times_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("slow", request=request)


async def _deliver(endpoint: Endpoint, policy: Policy = POLICY,
                   ) -> tuple[Outcome, list[float]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint)) as client:
        caller = Caller("lyon-cantine", URL, Signer(SECRET, "V"), policy, client, _public,
                        sleep, random.Random(3))
        return await caller.deliver("dlv-1", BODY), waits


async def test_a_2xx_accepts_the_delivery_signed_as_cloudevents_json() -> None:
    endpoint = Endpoint(_status(204))
    outcome, waits = await _deliver(endpoint)
    assert outcome.accepted
    assert outcome.attempts == 1
    assert waits == []
    (request,) = endpoint.requests
    assert request.method == "POST"
    assert request.headers["content-type"] == CONTENT_TYPE
    assert Webhook(SECRET).verify(request.content, dict(request.headers)) == {"id": "dlv-1"}


async def test_failures_are_retried_with_the_same_id_each_signed_anew() -> None:
    endpoint = Endpoint(_status(500), _times_out, _status(502), _status(200))
    outcome, waits = await _deliver(endpoint)
    assert outcome.accepted
    assert outcome.attempts == 4
    assert len(waits) == 3
    assert all(0 <= wait <= 0.5 * 2 ** n for n, wait in enumerate(waits))
    assert {r.headers["webhook-id"] for r in endpoint.requests} == {"dlv-1"}
    for request in endpoint.requests:
        Webhook(SECRET).verify(request.content, dict(request.headers))


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_the_wait(status: int) -> None:
    endpoint = Endpoint(_status(status, **{"Retry-After": "12"}), _status(200))
    outcome, waits = await _deliver(endpoint)
    assert outcome.accepted
    assert waits == [12.0]


async def test_410_disables_the_endpoint_at_once() -> None:
    before = metrics.DISABLED.labels("lyon-cantine")._value.get()
    endpoint = Endpoint(_status(410), _status(200))
    with pytest.raises(EndpointGone):
        await _deliver(endpoint)
    assert len(endpoint.requests) == 1
    assert before == 0
    assert metrics.DISABLED.labels("lyon-cantine")._value.get() == 1
    metrics.DISABLED.labels("lyon-cantine").set(0)


async def test_the_budget_spent_gives_up_with_the_last_answer() -> None:
    failures = metrics.FAILURES.labels("lyon-cantine", "500")._value.get()
    endpoint = Endpoint(*[_status(500)] * 4)
    outcome, waits = await _deliver(endpoint)
    assert not outcome.accepted
    assert (outcome.attempts, outcome.last) == (4, 500)
    assert len(waits) == 3, "no wait after the last attempt"
    assert metrics.FAILURES.labels("lyon-cantine", "500")._value.get() == failures + 4


async def test_a_redirect_to_a_public_address_is_followed_with_the_same_body() -> None:
    endpoint = Endpoint(_status(307, location="https://other.lyon.example/in"), _status(200))
    outcome, _ = await _deliver(endpoint)
    assert outcome.accepted
    assert [str(r.url) for r in endpoint.requests] == [URL, "https://other.lyon.example/in"]
    assert endpoint.requests[1].content == BODY.encode()


async def test_a_redirect_to_a_private_address_is_never_called() -> None:
    redirect = _status(302, location="https://internal.lyon.example/admin")
    endpoint = Endpoint(*[redirect] * 2)
    outcome, _ = await _deliver(endpoint, Policy(2, 0.1, 1.0, 1.0, False))
    assert not outcome.accepted
    assert outcome.last == "refused"
    assert all(r.url.host == "hooks.lyon.example" for r in endpoint.requests)
