"""The gateway's journal: the page's development sign-in runs only where nobody but the
developer can reach it (off by default, refused at start on a secured bus or off loopback); a
view that stopped following or is still rebuilding takes the journal page out of service, not
the gateway; one process holds a view."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.gateway import citizen
from connectors.gateway.app import create_app
from connectors.gateway.citizen import COOKIE, Sessions, SignInRefused, check_sign_in
from schemas.catalog import Catalog
from streams.journal.entries import Source, from_consent
from streams.journal.follower import JournalFollowerStopped
from streams.journal.view import JournalView, ViewLocked
from streams.kafka.topics import CONSENTS
from streams.settings import Settings
from streams.state.contract import Contract


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


def _gateway(journal: object, settings: Settings | None = None) -> tuple[TestClient, str]:
    """The health and journal routes of a gateway whose view is ``journal``, and the cookie
    of a signed-in person."""
    app = create_app(Settings())  # not started: its state is set here
    app.state.tokens = app.state.registry = _Answers()
    app.state.settings = settings or Settings()
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


CATALOG = Catalog.load()
ALICE = "sr1_" + "a" * 64
AT = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _contract(contract_id: str, consent: str, population: str = "all", revoked: bool = False,
              valid_from: date = date(2026, 1, 1)) -> Contract:
    return Contract.checked({
        "id": contract_id, "subscriber": "ville-de-lyon", "subscriber_siret": "21690123100011",
        "purpose": f"Tarification {contract_id}", "legal_basis": "CRPA art. L114-8",
        "datasets": {"statut_etudiant_boursier": ["echelon"]}, "consent": consent,
        "population": population, "retention": "P90D", "valid_from": valid_from,
        "revoked": revoked, "revoked_at": AT if revoked else None}, CATALOG)


class _Following:
    def __init__(self, view: JournalView) -> None:
        self.view = view

    async def caught_up(self) -> None:
        return None


COLLECTOR = "41002605800017"


@pytest.fixture
def standing_choices(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    """A person who granted consent to contracts that decide nothing about them today (an
    enrolled-population one that released them, one not yet in force, one revoked)."""
    view = JournalView(tmp_path)
    batch = view.batch()
    for contract in (_contract("c-released", "opt_in", "enrolled"),
                     _contract("c-later", "opt_in", valid_from=date(2999, 1, 1)),
                     _contract("c-gone", "opt_in", revoked=True),
                     _contract("c-never", "opt_in", "enrolled"),
                     _contract("c-out-later", "opt_out", valid_from=date(2999, 1, 1))):
        batch.contract(contract.id, contract)
    for offset, contract_id in enumerate(("c-released", "c-later", "c-gone")):
        batch.add(from_consent({"contract_id": contract_id, "subject_ref": ALICE,
                                "status": "granted", "recorded_at": AT,
                                "collected_by": "21690123100011", "channel": "counter",
                                "evidence_ref": None}), Source(CONSENTS, 0, offset))
    batch.commit({})
    client, _ = _gateway(_Following(view), Settings(journal_collector_siret=COLLECTOR))
    session = client.app.state.sessions.open(ALICE)  # type: ignore[attr-defined]
    client.cookies.set(COOKIE, session)
    yield client, session
    view.close()


def _buttons(page: str) -> set[tuple[str, str]]:
    return set(re.findall(r'aria-label="([^"]+) pour la convention ([^"]+)"', page))


def test_every_standing_consent_can_be_withdrawn_on_the_page(
        standing_choices: tuple[TestClient, str]) -> None:
    client, _ = standing_choices
    page = client.get("/journal")
    assert page.status_code == 200
    assert _buttons(page.text) == {("Retirer mon accord", "c-released"),
                                   ("Retirer mon accord", "c-later"),
                                   ("M&#x27;opposer", "c-out-later")}


def test_a_page_withdrawal_is_collected_by_the_page_s_administration(
        standing_choices: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch) -> None:
    client, session = standing_choices
    written: list[tuple[Any, ...]] = []

    async def recorded(*args: Any, **options: Any) -> None:
        written.append((*args, options))

    monkeypatch.setattr(citizen, "set_consent", recorded)
    csrf = client.app.state.sessions._sessions[session].csrf  # type: ignore[attr-defined]
    answer = client.post("/journal/choix", data={"csrf": csrf, "contract": "c-released"},
                         follow_redirects=False)
    assert answer.status_code == 303
    [(_, contract, subjects, status, channel, options)] = written
    assert (contract.id, [s.reference for s in subjects], status, channel) == (
        "c-released", [ALICE], "withdrawn", "online_portal")
    assert options["collected_by"] == COLLECTOR != contract.subscriber_siret
    assert options["evidence_ref"].startswith("circulation-journal-")


def test_without_its_administration_s_siret_the_page_records_no_choice(
        standing_choices: tuple[TestClient, str]) -> None:
    client, session = standing_choices
    client.app.state.settings = Settings()  # type: ignore[attr-defined]
    csrf = client.app.state.sessions._sessions[session].csrf  # type: ignore[attr-defined]
    answer = client.post("/journal/choix", data={"csrf": csrf, "contract": "c-released"})
    assert answer.status_code == 503
    assert "adressez-vous" in answer.text
    assert "Réessayez" not in answer.text  # trying again would not help


def test_a_form_with_too_many_fields_is_refused_not_a_crash() -> None:
    client, session = _gateway(None)
    client.cookies.set(COOKIE, session)
    fields = {f"f{n}": "x" for n in range(citizen.MAX_FORM_FIELDS + 1)}
    answer = client.post("/journal/deconnexion", data=fields)
    assert answer.status_code == 400
    assert "x" not in answer.json()["detail"]


def test_the_page_s_administration_must_have_a_real_siret() -> None:
    with pytest.raises(ValueError, match="journal_collector_siret"):
        Settings(journal_collector_siret="11002605000028")  # the right shape, a wrong key


def test_a_choice_written_is_said_written_even_when_the_view_lags(
        standing_choices: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch) -> None:
    client, session = standing_choices
    follower = client.app.state.journal  # type: ignore[attr-defined]
    reads = []

    async def lagging() -> None:
        reads.append(1)
        if len(reads) > 1:  # after the write
            raise JournalFollowerStopped("the journal follower stopped: KafkaError")

    async def recorded(*_: Any, **__: Any) -> None:
        return None

    monkeypatch.setattr(follower, "caught_up", lagging)
    monkeypatch.setattr(citizen, "set_consent", recorded)
    csrf = client.app.state.sessions._sessions[session].csrf  # type: ignore[attr-defined]
    answer = client.post("/journal/choix", data={"csrf": csrf, "contract": "c-released"},
                         follow_redirects=False)
    assert answer.status_code == 303  # not a 503 saying to try again what was done
    assert client.app.state.sessions._sessions[session].done == "c-released"  # type: ignore[attr-defined]
