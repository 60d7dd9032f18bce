"""The portal routes' bodies, refusals and answers, the bus's writes replaced by recorders.

What reaches Kafka is tested against the real broker in
``tests/integration/test_gateway_portal.py``; here, which request is refused with what, and
that a refused request writes nothing and repeats nothing it was sent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiokafka.errors import KafkaConnectionError
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_of_hypothesis
from hypothesis import strategies as st
from pydantic import ValidationError
from schemathesis import Case, checks

from connectors.gateway import contracts, portal, problems
from connectors.gateway.app import create_app
from connectors.gateway.portal import ConsentDecisions
from connectors.gateway.subjects import SubjectsBody
from schemas.catalog import Catalog
from schemas.nir_detection import contains_nir
from streams.dev.synthetic.population import companies, people
from streams.privacy.pseudonyms import Pseudonymiser, SubjectReferences
from streams.privacy.secret import SecretRefused, pseudonym_secret, subject_secret
from streams.security.principals import Principal
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.subject_lists import given_kind
from streams.state.subjects import Subject
from tests.unit.command_settings import strong_secret

CATALOG = Catalog.load()
PERSONS = [p.nir for p in people(4242, 3)]
BAD_NIR = PERSONS[0][:-2] + ("00" if PERSONS[0][-2:] != "00" else "01")
"""A NIR whose control key is wrong."""
SIRET = "21690123100011"
TOKENS = {"sub-token": "subscriber.ville-a", "other-token": "subscriber.ville-b",
          "provider-token": "provider.cnaf"}


def a_contract(contract_id: str = "c-ville-a", subscriber: str = "ville-a") -> Contract:
    return Contract.checked({
        "id": contract_id, "subscriber": subscriber, "subscriber_siret": SIRET,
        "purpose": "Tarification sociale", "legal_basis": "Essai",
        "datasets": {"quotient_familial": ["quotient_familial"]}, "consent": "opt_in",
        "population": "enrolled", "retention": "P90D", "valid_from": "2026-01-01"}, CATALOG)


class _Tokens:
    def principal(self, token: str) -> Principal | None:
        name = TOKENS.get(token)
        return None if name is None else Principal.parse(name)


@dataclass
class Bus:
    """What the routes asked of the bus."""

    contracts: dict[str, Contract] = field(default_factory=dict)
    looked_up: list[str] = field(default_factory=list)
    population: list[tuple[list[str], bool]] = field(default_factory=list)
    consents: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(cache_dir=tmp_path, gateway_max_subjects=5)


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> Bus:
    state = Bus(contracts={c.id: c for c in (a_contract(), a_contract("c-ville-b", "ville-b"))})

    async def find_contract(_: Settings, contract_id: str) -> Contract:
        state.looked_up.append(contract_id)
        if state.down:
            raise KafkaConnectionError()
        if contract_id not in state.contracts:
            raise LookupError("no contract of that id")
        return state.contracts[contract_id]

    async def set_population(_: Settings, contract: Contract, subjects: Sequence[Subject],
                             enrolled: bool) -> None:
        state.population.append(([s.reference for s in subjects], enrolled))

    async def set_consent(_: Settings, contract: Contract, subjects: Sequence[Subject],
                          *terms: Any) -> None:
        state.consents.append({"refs": [s.reference for s in subjects], "terms": terms})

    monkeypatch.setattr(contracts, "find_contract", find_contract)
    monkeypatch.setattr(portal, "set_population", set_population)
    monkeypatch.setattr(portal, "set_consent", set_consent)
    return state


@pytest.fixture
def client(settings: Settings, bus: Bus) -> Iterator[TestClient]:
    app = FastAPI()
    problems.install(app)
    app.include_router(portal.router)
    app.state.settings = settings
    app.state.tokens = _Tokens()
    with TestClient(app) as test_client:
        yield test_client


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def reference(settings: Settings, nir: str) -> str:
    return SubjectReferences(subject_secret(settings)).for_person(nir)


# --- bodies -------------------------------------------------------------------------------


def test_a_consent_body_takes_the_command_s_defaults() -> None:
    body = ConsentDecisions.model_validate({"subjects": PERSONS[:1], "status": "granted"})
    assert (body.channel, body.evidence, body.collected_by) == ("online_portal", None, None)


@pytest.mark.parametrize("body", [
    {"subjects": []},
    {"subjects": [""]},
    {"subjects": ["1" * 33]},
    {"subjects": [1234]},
    {"subjects": PERSONS, "extra": 1},
])
def test_a_subjects_body_is_bounded_and_closed(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SubjectsBody.model_validate(body)


@pytest.mark.parametrize("terms", [
    {"status": "maybe"}, {"status": "granted", "channel": "fax"},
    {"status": "granted", "evidence": "x" * 201},
])
def test_a_consent_body_knows_its_statuses_channels_and_evidence_length(
        terms: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ConsentDecisions.model_validate({"subjects": PERSONS[:1], **terms})


# --- who may -----------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, as_("no-such-token"), {"Authorization": "Basic x"}])
def test_no_or_a_bad_token_is_401(client: TestClient, bus: Bus,
                                  headers: dict[str, str]) -> None:
    answer = client.post("/v1/contracts/c-ville-a/population", json={"subjects": PERSONS},
                         headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert bus.population == []


def test_a_provider_token_is_403_before_any_contract_is_looked_up(client: TestClient,
                                                                 bus: Bus) -> None:
    answer = client.post("/v1/contracts/c-ville-a/population", json={"subjects": PERSONS},
                         headers=as_("provider-token"))
    assert answer.status_code == 403
    assert bus.looked_up == []
    assert bus.population == []


def test_another_subscriber_s_contract_is_403(client: TestClient, bus: Bus) -> None:
    answer = client.post("/v1/contracts/c-ville-b/consents",
                         json={"subjects": PERSONS, "status": "withdrawn"},
                         headers=as_("sub-token"))
    assert answer.status_code == 403
    assert bus.consents == []


def test_an_unknown_contract_is_404_without_repeating_its_id(client: TestClient,
                                                             bus: Bus) -> None:
    answer = client.request("DELETE", f"/v1/contracts/{PERSONS[0]}/population",
                            json={"subjects": PERSONS}, headers=as_("sub-token"))
    assert answer.status_code == 404
    assert answer.headers["content-type"] == problems.PROBLEM_JSON
    assert PERSONS[0] not in answer.text
    assert bus.population == []


def test_a_broker_that_does_not_answer_is_503(client: TestClient, bus: Bus) -> None:
    bus.down = True
    answer = client.post("/v1/contracts/c-ville-a/population", json={"subjects": PERSONS},
                         headers=as_("sub-token"))
    assert answer.status_code == 503
    assert answer.headers["content-type"] == problems.PROBLEM_JSON


def test_a_method_the_population_does_not_take_is_405_naming_both_it_takes(
        client: TestClient) -> None:
    answer = client.put("/v1/contracts/c-ville-a/population", json={"subjects": PERSONS},
                        headers=as_("sub-token"))
    assert answer.status_code == 405
    assert answer.headers["allow"] == "DELETE, POST"
    assert answer.headers["content-type"] == problems.PROBLEM_JSON


def test_a_body_that_is_not_utf8_is_a_400_problem(client: TestClient, bus: Bus) -> None:
    answer = client.post("/v1/contracts/c-ville-a/population", content=b'{"subjects": ["\xff"]}',
                         headers={**as_("sub-token"), "content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.headers["content-type"] == problems.PROBLEM_JSON
    assert bus.population == []


# --- what is refused ---------------------------------------------------------------------


def test_more_subjects_than_the_setting_allows_is_413(client: TestClient, bus: Bus,
                                                      settings: Settings) -> None:
    too_many = [p.nir for p in people(77, settings.gateway_max_subjects + 1)]
    answer = client.post("/v1/contracts/c-ville-a/population", json={"subjects": too_many},
                         headers=as_("sub-token"))
    assert answer.status_code == 413
    assert bus.population == []
    within = client.post("/v1/contracts/c-ville-a/population",
                         json={"subjects": too_many[:-1]}, headers=as_("sub-token"))
    assert within.status_code == 200


def test_every_invalid_subject_is_named_by_index_never_by_value_and_nothing_written(
        client: TestClient, bus: Bus) -> None:
    sent = [PERSONS[0], BAD_NIR, PERSONS[1], "12345678", BAD_NIR]
    answer = client.post("/v1/contracts/c-ville-a/population", json={"subjects": sent},
                         headers=as_("sub-token"))
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == [
        "body.subjects.1", "body.subjects.3", "body.subjects.4"]
    assert all(e["reason"] for e in answer.json()["errors"])
    for value in (*PERSONS, BAD_NIR, "12345678"):
        assert value not in answer.text
    assert bus.population == []


def test_a_nir_in_the_evidence_is_refused_by_field_without_repeating_it(
        client: TestClient, bus: Bus) -> None:
    answer = client.post("/v1/contracts/c-ville-a/consents", headers=as_("sub-token"), json={
        "subjects": PERSONS, "status": "granted", "evidence": f"form of {PERSONS[2]}"})
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["body.evidence"]
    assert PERSONS[2] not in answer.text
    assert bus.consents == []


def test_an_invalid_collecting_siret_is_refused_without_repeating_it(client: TestClient,
                                                                     bus: Bus) -> None:
    wrong = SIRET[:-1] + "2"
    answer = client.post("/v1/contracts/c-ville-a/consents", headers=as_("sub-token"), json={
        "subjects": [BAD_NIR], "status": "granted", "collected_by": wrong})
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["body.subjects.0",
                                                             "body.collected_by"]
    assert wrong not in answer.text
    assert wrong[:9] not in answer.text
    assert bus.consents == []


# --- what is written and answered --------------------------------------------------------


def test_an_enrolment_answers_pseudonyms_by_index_never_the_nirs(
        client: TestClient, bus: Bus, settings: Settings) -> None:
    sent = [PERSONS[0], PERSONS[1], PERSONS[0]]
    answer = client.post("/v1/contracts/c-ville-a/population", json={"subjects": sent},
                         headers=as_("sub-token"))
    assert answer.status_code == 200
    mine = Pseudonymiser(pseudonym_secret(settings)).for_subscriber("ville-a")
    expected = [mine.pseudonym(reference(settings, nir)) for nir in sent]
    assert answer.json() == {
        "contract_id": "c-ville-a", "written": 2, "repeats": 1,
        "pseudonyms": [{"index": i, "pseudonym": p} for i, p in enumerate(expected)]}
    assert not any(nir in answer.text for nir in PERSONS)
    assert bus.population == [([reference(settings, PERSONS[0]),
                                reference(settings, PERSONS[1])], True)]


def test_a_nir_with_spaces_is_the_same_subject_and_a_company_s_pseudonym_is_its_siren(
        client: TestClient, bus: Bus, settings: Settings) -> None:
    nir = PERSONS[1]
    spaced = f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:7]} {nir[7:10]} {nir[10:13]} {nir[13:]}"
    siren = companies(99, 1)[0]
    answer = client.post("/v1/contracts/c-ville-a/population", headers=as_("sub-token"),
                         json={"subjects": [nir, siren, spaced]})
    assert answer.status_code == 200
    shown = answer.json()["pseudonyms"]
    assert (answer.json()["written"], answer.json()["repeats"]) == (2, 1)
    assert shown[0]["pseudonym"] == shown[2]["pseudonym"] != nir
    assert shown[1] == {"index": 1, "pseudonym": siren}
    assert bus.population == [([reference(settings, nir), siren], True)]


def test_a_body_off_its_schema_is_422_naming_the_field(client: TestClient, bus: Bus) -> None:
    answer = client.post("/v1/contracts/c-ville-a/consents", headers=as_("sub-token"),
                         json={"subjects": PERSONS[:1], "status": "perhaps"})
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["body.status"]
    assert bus.looked_up == []


def test_a_release_writes_each_subject_once_and_counts(client: TestClient, bus: Bus,
                                                      settings: Settings) -> None:
    answer = client.request("DELETE", "/v1/contracts/c-ville-a/population",
                            json={"subjects": [PERSONS[2], PERSONS[2]]},
                            headers=as_("sub-token"))
    assert answer.status_code == 200
    assert answer.json() == {"contract_id": "c-ville-a", "written": 1, "repeats": 1}
    assert bus.population == [([reference(settings, PERSONS[2])], False)]


def test_a_withdrawal_is_recorded_with_its_terms_and_counts_its_notices(
        client: TestClient, bus: Bus, settings: Settings) -> None:
    answer = client.post("/v1/contracts/c-ville-a/consents", headers=as_("sub-token"), json={
        "subjects": PERSONS[:2], "status": "withdrawn", "channel": "counter",
        "evidence": "guichet-2026-118", "collected_by": SIRET})
    assert answer.status_code == 200
    assert answer.json() == {"contract_id": "c-ville-a", "written": 2, "repeats": 0,
                             "status": "withdrawn", "erasure_notices": 2}
    assert bus.consents == [{"refs": [reference(settings, n) for n in PERSONS[:2]],
                             "terms": ("withdrawn", "counter", SIRET, "guichet-2026-118")}]


def test_a_grant_sends_no_notice(client: TestClient, bus: Bus) -> None:
    answer = client.post("/v1/contracts/c-ville-a/consents", headers=as_("sub-token"),
                         json={"subjects": PERSONS[:1], "status": "granted"})
    assert answer.status_code == 200
    assert answer.json()["erasure_notices"] == 0
    assert bus.consents[0]["terms"] == ("granted", "online_portal", None, None)


# --- secrets -----------------------------------------------------------------------------


def test_the_gateway_does_not_start_without_the_pseudonym_secret(tmp_path: Path) -> None:
    """Enrolments answer pseudonyms and withdrawals send notices under them: a gateway that
    could not would fail its first portal request, so it refuses to start, before it connects
    to anything, naming the setting."""
    app = create_app(Settings(cache_dir=tmp_path, security_protocol="SASL_PLAINTEXT",
                              subject_secret=strong_secret()))
    with pytest.raises(SecretRefused) as caught, TestClient(app):
        pass
    assert caught.value.setting == "CIRCULATION_PSEUDONYM_SECRET"


# --- any input ----------------------------------------------------------------------------


def _portal_app() -> FastAPI:
    app = FastAPI()
    problems.install(app)
    app.include_router(portal.router)
    return app


FUZZED = _portal_app()
fuzzed = schemathesis.openapi.from_asgi("/openapi.json", FUZZED)
"""The portal routes' own OpenAPI document, served by an app whose bus is the recorder above
(set up per test, below)."""


@fuzzed.parametrize()
@settings_of_hypothesis(max_examples=60, deadline=None,
                        suppress_health_check=list(HealthCheck))
def test_no_input_makes_a_portal_route_fail_or_answer_off_its_schema(
        case: Case[Any], settings: Settings, bus: Bus) -> None:
    """Valid and invalid requests alike (schemathesis' positive and negative cases): never a
    5xx, and every answer is one the document declares, in the shape it declares. Every
    contract id is the caller's, so that generated requests reach the writes, not only 404.

    Only "a schema-valid request is accepted" is left out: a string of the right length is
    not yet a NIR (its control key is checked after the schema, 422), and the count bound is
    a setting (413), which no schema can say."""
    mine = a_contract()
    bus.contracts = defaultdict(lambda: mine)
    FUZZED.state.settings = settings
    FUZZED.state.tokens = _Tokens()
    case.call_and_validate(headers=as_("sub-token"),
                           excluded_checks=[checks.positive_data_acceptance])


def _typo(nir: str) -> str:
    """The NIR with a wrong control key: what a portal's user most often mistypes."""
    return nir[:13] + f"{int(nir[13:]) % 97 + 1:02d}"


SOME_PERSONS = [p.nir for p in people(515, 20)]
HOSTILE_SUBJECTS = st.lists(st.one_of(
    st.sampled_from(SOME_PERSONS),
    st.sampled_from(SOME_PERSONS).map(_typo),
    st.sampled_from(SOME_PERSONS).map(lambda nir: f" {nir[:7]} {nir[7:]} "),
    st.sampled_from(SOME_PERSONS).map(lambda nir: nir[:-1]),
    st.text(max_size=32).filter(bool)), min_size=1, max_size=5)


@settings_of_hypothesis(max_examples=150, deadline=None,
                        suppress_health_check=list(HealthCheck))
@given(subjects=HOSTILE_SUBJECTS)
def test_any_list_of_subjects_is_answered_without_repeating_one(
        client: TestClient, bus: Bus, subjects: list[str]) -> None:
    """Valid, mistyped, spaced, truncated or arbitrary subjects: the answer names places and
    counts, never a NIR, whole or typed with a mistake (a SIREN is answered as its own
    pseudonym); a refusal writes nothing."""
    writes = len(bus.population)
    answer = client.post("/v1/contracts/c-ville-a/population", json={"subjects": subjects},
                         headers=as_("sub-token"))
    assert answer.status_code in (200, 422)
    assert not contains_nir(answer.text)
    assert not any(text.strip() in answer.text for text in subjects
                   if sum(c.isdigit() for c in text) >= 9 and given_kind(text) == "person")
    if answer.status_code == 422:
        assert len(bus.population) == writes
        assert {e["field"] for e in answer.json()["errors"]} <= {
            f"body.subjects.{index}" for index in range(len(subjects))}
    else:
        assert answer.json()["written"] + answer.json()["repeats"] == len(subjects)
