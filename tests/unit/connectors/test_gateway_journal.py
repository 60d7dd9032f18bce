"""The gateway's journal: the page's development sign-in runs only where nobody but the
developer can reach it (off by default, refused at start on a secured bus or off loopback); a
view that stopped following or is still rebuilding takes the journal page out of service, not
the gateway; one process holds a view."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from connectors.gateway import citizen
from connectors.gateway.app import create_app
from connectors.gateway.citizen import COOKIE, Sessions, SignInRefused, check_sign_in
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
    async def caught_up(self) -> None:
        raise JournalFollowerStopped("the journal follower stopped: KafkaError")


class _Rebuilding:
    async def caught_up(self) -> None:
        await asyncio.sleep(3600)


def _gateway(journal: object) -> tuple[TestClient, str]:
    """The health and journal routes of a gateway whose view is ``journal``, and the cookie
    of a signed-in person."""
    app = create_app(Settings())  # not started: its state is set here
    app.state.tokens = app.state.registry = _Answers()
    app.state.settings = Settings()
    app.state.journal = journal
    app.state.sessions = Sessions()
    return TestClient(app), app.state.sessions.open("sr1_" + "a" * 64)


def test_a_gateway_whose_journal_view_stopped_following_stays_ready() -> None:
    """The view is the journal page's alone: it going down does not take the events and
    portals of every replica out of service; the page says it is unavailable, in French."""
    for journal in (None, _Stopped()):
        client, session = _gateway(journal)
        assert client.get("/readyz").status_code == 200
        client.cookies.set(COOKIE, session)
        page = client.get("/journal")
        assert page.status_code == 503
        assert "Réessayez dans quelques minutes" in page.text
        assert page.headers["content-type"].startswith("text/html")
        assert "sr1_" not in page.text
        assert client.get("/readyz").status_code == 200


def test_a_view_still_rebuilding_answers_503_rather_than_hang(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(citizen, "CATCH_UP_TIMEOUT_S", 0.1)
    client, session = _gateway(_Rebuilding())
    client.cookies.set(COOKIE, session)
    page = client.get("/journal")
    assert page.status_code == 503
    assert "en cours de mise à jour" in page.text


def test_one_process_holds_a_view_at_a_time(tmp_path: Path) -> None:
    held = JournalView(tmp_path)
    try:
        with pytest.raises(ViewLocked, match="another process"):
            JournalView(tmp_path)
    finally:
        held.close()
