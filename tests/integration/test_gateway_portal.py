"""A subscriber's portal on the real gateway, broker, registry and routing workers.

``circulation api`` runs as a process of its own, as in production; a subscriber's token made
with ``circulation credentials create --token`` enrols, releases and records consents through
it, and the session's routing workers route events published after each answer: the answer
comes once the change is fenced, so no waiting is needed between the two.

Two contracts of one subscriber on the same dataset: ``E`` follows enrolled persons only, ``O``
follows everybody but asks consent (opt-in). ``O`` decides about every event, so its audit
record of an event says the workers have routed it: ``E``'s silence about the same event is
then a real absence, not a delay.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.nir_detection import contains_nir
from streams.dev.synthetic import Person
from streams.kafka.topics import CONSENTS, POPULATION
from streams.state.contract import Contract
from streams.state.contract_store import ContractStore
from tests.integration.gateway_process import gateway_client
from tests.integration.routing_harness import (
    CATALOG,
    Bus,
    Offsets,
    Record,
    Sent,
    audit_start,
    end_offsets,
    event_for,
    fresh_people,
    header,
    read_all,
    today,
)

pytest_plugins = ("tests.integration.routing_harness",)

BOURSIER = "statut_etudiant_boursier"
MAX_SUBJECTS = 5
"""The gateway's gateway_max_subjects here: small, so that a 413 takes a small body."""


@dataclass
class Portal:
    """The gateway as a portal sees it, and the contracts it is about."""

    client: httpx.AsyncClient
    tokens: dict[str, str]
    enrolled: Contract
    opt_in: Contract
    others: Contract
    log: Path

    def as_(self, principal: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[principal]}"}

    async def call(self, method: str, contract: Contract | str, what: str,
                   body: dict[str, Any], principal: str = "mine") -> httpx.Response:
        contract_id = contract if isinstance(contract, str) else contract.id
        return await self.client.request(method, f"/v1/contracts/{contract_id}/{what}",
                                         json=body, headers=self.as_(principal))


async def _token(bus: Bus, principal: str) -> str:
    code, out, err = await bus.run_cli("credentials", "create", principal, "--token")
    assert code == 0, err
    made: str = json.loads(out)["token"]
    return made


@pytest.fixture(scope="module")
def gateway_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway") / "gateway.log"


@pytest.fixture(scope="module")
async def portal(bus: Bus, gateway_log: Path) -> AsyncIterator[Portal]:
    """Contracts applied and tokens made first, then the gateway started (it reads every
    token before it answers), ready once /readyz says so."""
    enrolled = bus.contract("portal-enr", {BOURSIER: ["echelon"]}, population="enrolled",
                            subscriber="portal")
    opt_in = bus.contract("portal-optin", {BOURSIER: ["echelon"]}, consent="opt_in",
                          subscriber="portal")
    others = bus.contract("portal-other", {BOURSIER: ["echelon"]}, population="enrolled")
    await bus.apply(enrolled, opt_in, others)
    tokens = {"mine": await _token(bus, f"subscriber.{enrolled.subscriber}"),
              "theirs": await _token(bus, f"subscriber.{others.subscriber}"),
              "provider": await _token(bus, "provider.cnous")}
    env = {**bus.cli_env, "CIRCULATION_GATEWAY_MAX_SUBJECTS": str(MAX_SUBJECTS)}
    async with gateway_client(env, gateway_log) as client:
        yield Portal(client, tokens, enrolled, opt_in, others, gateway_log)


async def publish_about(bus: Bus, person: Person) -> Sent:
    """One event about ``person``, once written."""
    return (await bus.publish([event_for(BOURSIER, person)]))[0]


def delivered_ids(records: list[Record]) -> set[str | None]:
    return {header(r, "ce_id") for r in records if header(r, "ce_type") == BOURSIER}


async def notices_since(bus: Bus, start: Offsets) -> list[Record]:
    """The erasure notices on a delivery topic from ``start`` to its end now."""
    return await read_all(bus.settings, start,
                          lambda r: header(r, "ce_type") == "erasure_notice")


async def consents_of(bus: Bus, start: Offsets, contract: Contract,
                      person: Person) -> list[dict[str, Any]]:
    """The consent records written since ``start`` about ``person`` under ``contract``."""
    prefix = f"{contract.id}/{bus.reference(person)}/".encode()
    records = await read_all(bus.settings, start,
                             lambda r: bytes(r.key or b"").startswith(prefix))
    return [bus.serde.decode(r.value)[1] for r in sorted(records, key=lambda r: r.timestamp)]


async def test_a_portal_enrolment_is_delivered_under_the_pseudonym_it_answered(
        bus: Bus, portal: Portal) -> None:
    mine, everybody = portal.enrolled, portal.opt_in
    person = fresh_people(1)[0]
    delivery = await end_offsets(bus.settings, [mine.delivery_topic])

    answer = await portal.call("POST", mine, "population", {"subjects": [person.nir]})

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"contract_id": mine.id, "written": 1, "repeats": 0,
                             "pseudonyms": [{"index": 0,
                                             "pseudonym": bus.pseudonym(mine, person)}]}
    assert person.nir not in answer.text
    start = await audit_start(bus.settings)
    sent = await publish_about(bus, person)
    decided = await bus.decisions(start, [sent], [mine, everybody])
    assert decided[(sent.id, mine.id)]["decision"] == "delivered"
    assert decided[(sent.id, everybody.id)]["reason"] == "no_consent"
    records = await bus.delivered(mine, 1, event_type=BOURSIER, start=delivery)
    assert [(header(r, "ce_id"), header(r, "ce_subject")) for r in records] == [
        (bus.delivery_id(mine, sent), answer.json()["pseudonyms"][0]["pseudonym"])]


async def test_after_a_portal_release_a_later_event_is_not_delivered(bus: Bus,
                                                                     portal: Portal) -> None:
    mine, everybody = portal.enrolled, portal.opt_in
    person = fresh_people(1)[0]
    enrolled = await portal.call("POST", mine, "population", {"subjects": [person.nir]})
    assert enrolled.status_code == 200, enrolled.text

    released = await portal.call("DELETE", mine, "population",
                                 {"subjects": [person.nir, person.nir]})

    assert released.status_code == 200, released.text
    assert released.json() == {"contract_id": mine.id, "written": 1, "repeats": 1}
    delivery = await end_offsets(bus.settings, [mine.delivery_topic])
    start = await audit_start(bus.settings)
    later = await publish_about(bus, person)
    # the opt-in contract follows everybody: its decision says the event was routed, and
    # an audit record of the released contract for it would fail this wait
    decided = await bus.decisions(start, [later], [mine, everybody],
                                  follows=lambda _, contract: contract.id == everybody.id)
    assert decided[(later.id, everybody.id)]["reason"] == "no_consent"
    assert bus.delivery_id(mine, later) not in delivered_ids(
        await bus.delivered(mine, 0, start=delivery))


async def test_a_portal_withdrawal_withholds_later_events_and_sends_the_erasure_notice(
        bus: Bus, portal: Portal) -> None:
    contract = portal.opt_in
    person = fresh_people(1)[0]
    recorded = await end_offsets(bus.settings, [CONSENTS])
    granted = await portal.call("POST", contract, "consents", {
        "subjects": [person.nir], "status": "granted", "channel": "online_portal",
        "evidence": "session-2026-0042"})
    assert granted.status_code == 200, granted.text
    assert granted.json() == {"contract_id": contract.id, "written": 1, "repeats": 0,
                              "status": "granted", "erasure_notices": 0}
    start = await audit_start(bus.settings)
    before = await publish_about(bus, person)
    assert (await bus.decisions(start, [before], [contract]))[
        (before.id, contract.id)]["decision"] == "delivered"
    delivery = await end_offsets(bus.settings, [contract.delivery_topic])

    withdrawn = await portal.call("POST", contract, "consents", {
        "subjects": [person.nir], "status": "withdrawn", "channel": "counter"})

    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json() == {"contract_id": contract.id, "written": 1, "repeats": 0,
                                "status": "withdrawn", "erasure_notices": 1}
    notices = await notices_since(bus, delivery)  # read without waiting: sent before the answer
    assert [header(r, "ce_subject") for r in notices] == [bus.pseudonym(contract, person)]
    assert [(v["status"], v["channel"], v["collected_by"], v["evidence_ref"])
            for v in await consents_of(bus, recorded, contract, person)] == [
        ("granted", "online_portal", contract.subscriber_siret, "session-2026-0042"),
        ("withdrawn", "counter", contract.subscriber_siret, None)]
    start = await audit_start(bus.settings)
    after = await publish_about(bus, person)
    decided = (await bus.decisions(start, [after], [contract]))[(after.id, contract.id)]
    assert (decided["decision"], decided["reason"]) == ("withheld", "no_consent")
    assert bus.delivery_id(contract, after) not in delivered_ids(
        await bus.delivered(contract, 0, start=delivery))


async def test_a_withdrawal_on_a_revoked_or_ended_contract_still_sends_its_erasure_notice(
        bus: Bus, portal: Portal) -> None:
    revoked = bus.contract("portal-revoked", {BOURSIER: ["echelon"]}, consent="opt_in",
                           subscriber="portal")
    ended = bus.contract("portal-ended", {BOURSIER: ["echelon"]}, consent="opt_in",
                         subscriber="portal", valid_from=today() - timedelta(days=60),
                         valid_until=today() - timedelta(days=1))
    await bus.apply(revoked, ended)
    await ContractStore(bus.settings, bus.registry, CATALOG).revoke(revoked.id)
    person = fresh_people(1)[0]
    for contract in (revoked, ended):
        delivery = await end_offsets(bus.settings, [contract.delivery_topic])

        withdrawn = await portal.call("POST", contract, "consents",
                                      {"subjects": [person.nir], "status": "withdrawn"})

        assert withdrawn.status_code == 200, withdrawn.text
        notices = await notices_since(bus, delivery)
        assert [header(r, "ce_subject") for r in notices] == [bus.pseudonym(contract, person)]


async def test_a_portal_withdrawal_under_an_opt_out_contract_is_an_objection(
        bus: Bus, portal: Portal) -> None:
    contract = bus.contract("portal-optout", {BOURSIER: ["echelon"]}, consent="opt_out",
                            subscriber="portal")
    await bus.apply(contract)
    person = fresh_people(1)[0]
    objected = await portal.call("POST", contract, "consents",
                                 {"subjects": [person.nir], "status": "withdrawn"})
    assert objected.status_code == 200, objected.text
    start = await audit_start(bus.settings)
    after = await publish_about(bus, person)
    decided = (await bus.decisions(start, [after], [contract]))[(after.id, contract.id)]
    assert (decided["decision"], decided["reason"]) == ("withheld", "objection")


# --- refusals ------------------------------------------------------------------------------


async def test_no_token_or_a_bad_one_is_401(portal: Portal) -> None:
    path = f"/v1/contracts/{portal.enrolled.id}/population"
    body = {"subjects": [fresh_people(1)[0].nir]}
    for headers in ({}, {"Authorization": "Bearer circ_not-a-token"}):
        answer = await portal.client.post(path, json=body, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_another_subscriber_s_contract_or_a_provider_token_is_403(portal: Portal) -> None:
    body = {"subjects": [fresh_people(1)[0].nir]}
    theirs = await portal.call("POST", portal.others, "population", body)
    provider = await portal.call("POST", portal.enrolled, "population", body,
                                 principal="provider")
    withdrawal = await portal.call("POST", portal.enrolled, "consents",
                                   {**body, "status": "withdrawn"}, principal="theirs")
    assert (theirs.status_code, provider.status_code, withdrawal.status_code) == (403, 403, 403)


async def test_an_unknown_contract_is_404(portal: Portal) -> None:
    answer = await portal.call("DELETE", "no-such-contract", "population",
                               {"subjects": [fresh_people(1)[0].nir]})
    assert answer.status_code == 404
    assert "no-such-contract" not in answer.text


async def test_a_bad_nir_is_422_by_index_never_echoed_and_nothing_is_written(
        bus: Bus, portal: Portal) -> None:
    good, other = fresh_people(2)
    typo = good.nir[:13] + f"{int(good.nir[13:]) % 97 + 1:02d}"
    written = await end_offsets(bus.settings, [POPULATION, CONSENTS])

    enrolment = await portal.call("POST", portal.enrolled, "population",
                                  {"subjects": [other.nir, typo]})
    consent = await portal.call("POST", portal.opt_in, "consents",
                                {"subjects": [typo, other.nir], "status": "granted"})

    assert (enrolment.status_code, consent.status_code) == (422, 422)
    assert [e["field"] for e in enrolment.json()["errors"]] == ["body.subjects.1"]
    assert [e["field"] for e in consent.json()["errors"]] == ["body.subjects.0"]
    for answer in (enrolment, consent):
        assert typo not in answer.text
        assert other.nir not in answer.text
    assert await end_offsets(bus.settings, [POPULATION, CONSENTS]) == written


async def test_more_subjects_than_allowed_is_413_and_nothing_is_written(
        bus: Bus, portal: Portal) -> None:
    written = await end_offsets(bus.settings, [POPULATION])
    answer = await portal.call("POST", portal.enrolled, "population",
                               {"subjects": [p.nir for p in fresh_people(MAX_SUBJECTS + 1)]})
    assert answer.status_code == 413
    assert await end_offsets(bus.settings, [POPULATION]) == written


async def test_the_gateway_logs_routes_never_a_nir_nor_a_token(portal: Portal) -> None:
    person = fresh_people(1)[0]
    typo = person.nir[:13] + f"{int(person.nir[13:]) % 97 + 1:02d}"
    refused = await portal.call("POST", portal.enrolled, "population", {"subjects": [typo]})
    enrolled = await portal.call("POST", portal.enrolled, "population",
                                 {"subjects": [person.nir]})
    assert (refused.status_code, enrolled.status_code) == (422, 200)

    text = portal.log.read_text()
    assert '"route": "/v1/contracts/{id}/population"' in text
    assert '"request failed"' not in text, "a portal request crashed the gateway"
    assert portal.enrolled.id not in text, "a path was logged, not its route's template"
    assert not contains_nir(text)
    assert not any(token in text for token in portal.tokens.values())
