"""The gateway's journal: the page's development sign-in runs only where nobody but the
developer can reach it (off by default, refused at start on a secured bus or off loopback); a
view that stopped following makes the gateway not ready; one process holds a view."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from connectors.gateway import health, problems
from connectors.gateway.app import create_app
from connectors.gateway.citizen import SignInRefused, check_sign_in
from streams.journal.follower import JournalFollowerStopped
from streams.journal.view import JournalView, ViewLocked
from streams.settings import Settings


def test_the_development_sign_in_is_off_by_default() -> None:
    assert Settings().journal_dev_sign_in is False
    check_sign_in(Settings(), "0.0.0.0")  # off: any host will do


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_a_plaintext_gateway_on_loopback_may_offer_it(host: str) -> None:
    check_sign_in(Settings(journal_dev_sign_in=True), host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.4", "gateway.example.fr"])
def test_a_gateway_off_loopback_refuses_to_start_with_it(host: str) -> None:
    with pytest.raises(SignInRefused, match="loopback"):
        create_app(Settings(journal_dev_sign_in=True), host)


def test_a_secured_bus_refuses_it() -> None:
    with pytest.raises(SignInRefused, match="PLAINTEXT"):
        create_app(Settings(journal_dev_sign_in=True, security_protocol="SASL_SSL",
                            sasl_mechanism="SCRAM-SHA-512", sasl_username="bus-gateway",
                            sasl_password="x" * 32), "127.0.0.1")


class _Answers:
    async def reach_kafka(self) -> None:
        return None

    def subjects(self) -> list[str]:
        return []


class _Stopped:
    def ensure_following(self) -> None:
        raise JournalFollowerStopped("the journal follower stopped: KafkaError()")


def _probe(journal: object) -> int:
    app = FastAPI()
    problems.install(app)
    app.include_router(health.router)
    app.state.tokens = app.state.registry = _Answers()
    app.state.journal = journal
    return TestClient(app).get("/readyz").status_code


def test_a_gateway_whose_journal_view_stopped_following_is_not_ready() -> None:
    assert _probe(None) == 200  # no view kept: nothing to follow
    assert _probe(_Stopped()) == 503


def test_one_process_holds_a_view_at_a_time(tmp_path: Path) -> None:
    held = JournalView(tmp_path)
    try:
        with pytest.raises(ViewLocked, match="another process"):
            JournalView(tmp_path)
    finally:
        held.close()
