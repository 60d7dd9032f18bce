"""Every route's body is bounded before anything parses it, and a crash is answered and logged
without its message: what the gateway itself does before any route runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from connectors.gateway.app import create_app
from connectors.gateway.problems import PROBLEM_JSON
from streams.settings import Settings

LIMIT = 1024
NIR = "269054958815780"


@pytest.fixture
def client() -> TestClient:
    """The gateway without its lifespan: nothing behind the routes, which a bounded body
    must never reach."""
    return TestClient(create_app(Settings(gateway_max_body_bytes=LIMIT)),
                      raise_server_exceptions=False)


def _chunks(size: int) -> Iterator[bytes]:
    sent = 0
    while sent < size:
        yield b"[" * 256
        sent += 256


@pytest.mark.parametrize("path", ["/v1/contracts/lyon/population", "/v1/contracts/lyon/consents",
                                  "/v1/events"])
def test_a_declared_length_over_the_limit_is_413_before_anything_reads_it(
        client: TestClient, path: str) -> None:
    answer = client.post(path, content=b"{" * (LIMIT + 1),
                         headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.json()["errors"] == [{"field": "body", "reason": f"at most {LIMIT:,} bytes"}]


@pytest.mark.parametrize("path", ["/v1/contracts/lyon/population", "/v1/contracts/lyon/consents"])
def test_a_chunked_body_is_refused_once_it_passes_the_limit(client: TestClient,
                                                          path: str) -> None:
    """The portal's routes parse a declared model, which FastAPI reads before it knows who is
    calling: the bound is what stops a caller with no token from making a replica buffer any
    size. (``/v1/events`` asks for the token before it reads a byte.)"""
    answer = client.post(path, content=_chunks(LIMIT * 64),
                         headers={"content-type": "application/cloudevents+json"})
    assert answer.status_code == 413
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.json()["errors"] == [{"field": "body", "reason": f"at most {LIMIT:,} bytes"}]


def test_a_crash_is_answered_inside_the_gateway_never_raised_to_the_server() -> None:
    """Raised past the application, an exception reaches uvicorn, which logs its message:
    one may quote what the caller sent. The gateway answers it, by route and type only."""
    app = create_app(Settings())

    async def crash() -> None:
        raise RuntimeError(f"something about {NIR}")

    app.add_api_route("/crash", crash)
    answer = TestClient(app, raise_server_exceptions=True).get("/crash")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert NIR not in answer.text
