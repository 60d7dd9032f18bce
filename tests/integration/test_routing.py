"""Purpose-bound routing on the real broker, registry and two worker processes.

One scenario per module fixture, asserted from several angles:

- **The matrix**: six contracts on ``statut_etudiant_boursier``, one per consent mode
  (``not_required``, ``opt_in``, ``opt_out``) and population mode (``all``, ``enrolled``), and
  fifteen persons covering every population history (never enrolled, enrolled, enrolled then
  released) and consent history (none, granted, withdrawn, granted then withdrawn, withdrawn then
  granted), recorded for every contract. One event per person: every (event, contract) pair gets
  exactly the expected audit decision, each delivery topic holds exactly the expected events,
  projected on the contract's fields, under the subscriber's pseudonym, with the CloudEvents
  headers; every withdrawal sent an erasure notice; ``circulation consume`` prints the same. An
  ``enrolled`` contract that does not follow a person takes no decision about them: no audit
  record at all.
- **Companies**: the SIREN is the subject every subscriber sees; a contract on two datasets
  delivers the union of their projections.

The expected verdicts are computed here from the rules as the specification states them, not
with the bus's own code.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.dev.synthetic import Person
from streams.state.contract import Contract
from streams.state.subjects import resolve, set_consent, set_population
from tests.integration.plain_consumer import json_form
from tests.integration.routing_harness import (
    CATALOG,
    Bus,
    Record,
    Sent,
    audit_start,
    event_for,
    fresh_companies,
    fresh_people,
    header,
    parse_day,
    published_json,
    today,
)

pytest_plugins = ("tests.integration.routing_harness",)

BOURSIER = "statut_etudiant_boursier"
POPULATIONS = ("never", "enrolled", "released")
CONSENT_HISTORIES: tuple[tuple[str, ...], ...] = (
    (), ("granted",), ("withdrawn",), ("granted", "withdrawn"), ("withdrawn", "granted"))
DELIVERY_HEADERS = {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time",
                    "content-type", "ce_subject", "ce_contract", "ce_purpose", "ce_legalbasis",
                    "ce_expiresat"}


def follows(contract: Contract, enrolled: bool) -> bool:
    """Whether the contract follows the person, so decides about their events at all."""
    return contract.population == "all" or enrolled


def expected_reason(contract: Contract, enrolled: bool, consent: str | None) -> str | None:
    """The specification's verdict, in the order an auditor reads it, for a contract that
    follows the person (:func:`follows`); a contract that does not delivers nothing."""
    day = today()
    if contract.revoked or day < contract.valid_from or (
            contract.valid_until is not None and day > contract.valid_until):
        return "contract_inactive"
    if not follows(contract, enrolled):
        return "not_enrolled"
    if contract.consent == "opt_in" and consent != "granted":
        return "no_consent"
    if contract.consent == "opt_out" and consent == "withdrawn":
        return "objection"
    return None


@dataclass(frozen=True)
class Profile:
    """A person of the matrix: population history and consent history, for every contract."""

    person: Person
    population: str
    consents: tuple[str, ...]

    @property
    def enrolled(self) -> bool:
        return self.population == "enrolled"

    @property
    def consent(self) -> str | None:
        return self.consents[-1] if self.consents else None


@dataclass
class Matrix:
    contracts: list[Contract]
    profiles: list[Profile]
    sent: list[Sent]
    decisions: dict[tuple[str, str], dict[str, Any]]
    topics: dict[str, list[Record]]
    """Contract id → every record of its delivery topic."""
    printed: dict[str, str]
    """NIR → pseudonym, as ``population add`` printed them for the CLI-enrolled contract."""

    def profile_of(self, sent: Sent) -> Profile:
        (profile,) = [p for p in self.profiles if p.person.nir == sent.event["subject"]]
        return profile

    def expected_delivered(self, contract: Contract) -> set[str]:
        return {s.id for s in self.sent
                if expected_reason(contract, self.profile_of(s).enrolled,
                                   self.profile_of(s).consent) is None}

    def deliveries(self, contract: Contract) -> list[Record]:
        return [r for r in self.topics[contract.id] if header(r, "ce_type") == BOURSIER]

    def expected_notices(self, contract: Contract) -> list[tuple[str, Person]]:
        """(reason, person) of every erasure notice ``contract``'s subscriber must get: one per
        withdrawal, and one per release from a contract that follows the enrolled only."""
        withdrawn = [("consent_withdrawn", p.person) for p in self.profiles
                     if "withdrawn" in p.consents]
        released = [("population_removed", p.person) for p in self.profiles
                    if p.population == "released" and contract.population == "enrolled"]
        return withdrawn + released

    def notices(self, contract: Contract) -> list[Record]:
        return [r for r in self.topics[contract.id] if header(r, "ce_type") == "erasure_notice"]


def _matrix_contracts(bus: Bus) -> list[Contract]:
    # m-in-enr shares its subscriber with m-nr-all: pseudonyms are per subscriber, not contract.
    return [
        bus.contract("m-nr-all", {BOURSIER: ["est_boursier", "echelon", "date_fin_droits"]},
                     consent="not_required", population="all", subscriber="sub-a"),
        bus.contract("m-nr-enr", {BOURSIER: ["echelon"]},
                     consent="not_required", population="enrolled", subscriber="sub-b"),
        bus.contract("m-in-all", {BOURSIER: ["statut", "date_debut_droits"]},
                     consent="opt_in", population="all", subscriber="sub-c"),
        bus.contract("m-in-enr", {BOURSIER: ["ville_etudes", "est_boursier"]},
                     consent="opt_in", population="enrolled", subscriber="sub-a"),
        bus.contract("m-out-all", {BOURSIER: ["montant_annuel_centimes", "echelon"]},
                     consent="opt_out", population="all", subscriber="sub-d"),
        bus.contract("m-out-enr", {BOURSIER: ["date_fin_droits"]},
                     consent="opt_out", population="enrolled", subscriber="sub-e"),
    ]


CLI_ENROLLED = 3
"""Index of the contract whose population is enrolled with the ``population add`` command."""


async def _record_subjects(bus: Bus, contract: Contract, profiles: list[Profile],
                           via_cli: bool) -> dict[str, str]:
    """Population then consent histories of every profile under ``contract``."""
    printed: dict[str, str] = {}
    settings = bus.settings
    to_enrol = [p.person.nir for p in profiles if p.population != "never"]
    if via_cli:
        code, out, err = await bus.run_cli("population", "add", contract.id, *to_enrol)
        assert code == 0, err
        for line in out.splitlines():
            row = json.loads(line)
            printed[row["subject"]] = row["pseudonym"]
    else:
        await set_population(settings, contract, resolve(settings, to_enrol), True)
    released = [p.person.nir for p in profiles if p.population == "released"]
    await set_population(settings, contract, resolve(settings, released), False)
    for step in range(2):
        for status in ("granted", "withdrawn"):
            nirs = [p.person.nir for p in profiles
                    if len(p.consents) > step and p.consents[step] == status]
            if nirs:
                await set_consent(settings, contract, resolve(settings, nirs),
                                  status, "online_portal")
    return printed


@pytest.fixture(scope="module")
async def matrix(bus: Bus) -> Matrix:
    contracts = _matrix_contracts(bus)
    await bus.apply(*contracts)
    persons = fresh_people(len(POPULATIONS) * len(CONSENT_HISTORIES))
    profiles = [Profile(person, population, consents) for person, (population, consents) in
                zip(persons, [(p, c) for p in POPULATIONS for c in CONSENT_HISTORIES],
                    strict=True)]
    printed_all = await asyncio.gather(*(
        _record_subjects(bus, c, profiles, via_cli=index == CLI_ENROLLED)
        for index, c in enumerate(contracts)))
    start = await audit_start(bus.settings)
    sent = await bus.publish([event_for(BOURSIER, p.person) for p in profiles])
    decisions = await bus.decisions(
        start, sent, contracts,
        lambda s, c: follows(c, next(p for p in profiles
                                     if p.person.nir == s.event["subject"]).enrolled))
    state = Matrix(contracts, profiles, sent, decisions, {}, printed_all[CLI_ENROLLED])
    await asyncio.gather(*(
        bus.delivered(c, len(state.expected_delivered(c)), event_type=BOURSIER)
        for c in contracts))
    topics = await asyncio.gather(*(  # the workers send the releases' notices on their own
        bus.delivered(c, len(state.expected_notices(c)), event_type="erasure_notice")
        for c in contracts))
    state.topics = {c.id: records for c, records in zip(contracts, topics, strict=True)}
    return state


def test_every_decision_is_audited_with_the_expected_reason(matrix: Matrix) -> None:
    reasons: Counter[str | None] = Counter()
    for sent in matrix.sent:
        profile = matrix.profile_of(sent)
        for contract in matrix.contracts:
            if not follows(contract, profile.enrolled):
                assert (sent.id, contract.id) not in matrix.decisions
                reasons["not followed"] += 1
                continue
            audit = matrix.decisions[(sent.id, contract.id)]
            reason = expected_reason(contract, profile.enrolled, profile.consent)
            reasons[reason] += 1
            context = f"{contract.id} {profile.population}/{profile.consents}"
            assert audit["reason"] == reason, context
            assert audit["decision"] == ("delivered" if reason is None else "withheld"), context
            assert audit["subscriber"] == contract.subscriber
            assert (audit["provider"], audit["dataset"]) == ("cnous", BOURSIER)
            assert audit["subject_ref"] == sent.subject_ref
            assert audit["fields_delivered"] == (
                list(contract.datasets[BOURSIER]) if reason is None else [])
    # The matrix really exercises every outcome.
    assert set(reasons) == {None, "not followed", "no_consent", "objection"}


def test_each_delivery_topic_holds_exactly_the_allowed_events(bus: Bus, matrix: Matrix) -> None:
    for contract in matrix.contracts:
        by_id = bus.by_delivery_id(contract, matrix.sent)
        delivered = [by_id[header(r, "ce_id") or ""].id for r in matrix.deliveries(contract)]
        assert set(delivered) == matrix.expected_delivered(contract), contract.id
        assert matrix.expected_delivered(contract), f"{contract.id} delivers nothing at all"


def test_deliveries_carry_only_the_contract_fields_with_the_published_values(
        bus: Bus, matrix: Matrix) -> None:
    dataset_fields = [f["name"] for f in CATALOG.dataset(BOURSIER).latest.raw["fields"]]
    for contract in matrix.contracts:
        by_id = bus.by_delivery_id(contract, matrix.sent)
        fields = contract.datasets[BOURSIER]
        schema_id = bus.applied[contract.id].schema_id
        for record in matrix.deliveries(contract):
            written_with, datum = bus.decoder.decode(record.value)
            assert written_with == schema_id, "not the contract's delivery schema"
            writer, _ = bus.decoder.writer(written_with)
            assert [f["name"] for f in writer["fields"]] == [
                f for f in dataset_fields if f in fields], "projection order"
            published = published_json(by_id[header(record, "ce_id") or ""].event)
            assert json_form(datum) == {f: published[f] for f in fields}, contract.id


def test_delivery_headers_are_cloudevents_with_the_contract_extensions(
        bus: Bus, matrix: Matrix) -> None:
    for contract in matrix.contracts:
        by_id = bus.by_delivery_id(contract, matrix.sent)
        for record in matrix.deliveries(contract):
            headers = dict(record.headers)
            assert set(headers) == DELIVERY_HEADERS
            assert len(record.headers) == len(DELIVERY_HEADERS), "a header is repeated"
            sent = by_id[header(record, "ce_id") or ""]
            profile = matrix.profile_of(sent)
            pseudonym = bus.pseudonym(contract, profile.person)
            assert record.key == pseudonym.encode()
            assert header(record, "ce_subject") == pseudonym
            assert header(record, "ce_source") == "cnous"
            assert header(record, "ce_type") == BOURSIER
            assert header(record, "ce_specversion") == "1.0"
            assert header(record, "content-type") == "application/avro"
            published_at = datetime.fromisoformat(sent.event["time"]).astimezone(UTC)
            assert header(record, "ce_time") == f"{published_at.date()}T00:00:00Z", (
                "the event's own day, no finer")
            assert header(record, "ce_contract") == contract.id
            assert header(record, "ce_purpose") == contract.purpose
            assert header(record, "ce_legalbasis") == contract.legal_basis
            decided = matrix.decisions[(sent.id, contract.id)]["decided_at"]
            ends = decided + timedelta(milliseconds=contract.retention_ms)
            assert header(record, "ce_expiresat") == f"{ends.date()}T00:00:00Z", (
                "the start of the day the retention ends on")


def test_subscribers_see_their_own_pseudonyms(bus: Bus, matrix: Matrix) -> None:
    by_person: dict[str, dict[str, set[bytes]]] = {}
    for contract in matrix.contracts:
        by_id = bus.by_delivery_id(contract, matrix.sent)
        for record in matrix.deliveries(contract):
            sent = by_id[header(record, "ce_id") or ""]
            by_person.setdefault(sent.event["subject"], {}).setdefault(
                contract.subscriber, set()).add(record.key)
            assert not record.key.startswith(b"sr1_"), "a subject reference was delivered"
    shared = 0
    for nir, per_subscriber in by_person.items():
        assert all(len(keys) == 1 for keys in per_subscriber.values()), "unstable pseudonym"
        keys = [next(iter(keys)) for keys in per_subscriber.values()]
        assert len(set(keys)) == len(keys), "two subscribers got the same pseudonym"
        assert nir.encode() not in keys
        shared += len(per_subscriber) > 1
    assert shared, "no person reached two subscribers: the check above proved nothing"
    # Two contracts of one subscriber: one pseudonym per person.
    a_all, a_enr = matrix.contracts[0], matrix.contracts[CLI_ENROLLED]
    assert a_all.subscriber == a_enr.subscriber
    both = {header(r, "ce_id"): r.key for r in matrix.deliveries(a_all)}
    common = [r for r in matrix.deliveries(a_enr) if header(r, "ce_id") in both]
    assert common
    assert all(both[header(r, "ce_id")] == r.key for r in common)


def test_population_add_prints_the_pseudonym_the_subscriber_receives(bus: Bus,
                                                                     matrix: Matrix) -> None:
    contract = matrix.contracts[CLI_ENROLLED]
    by_id = bus.by_delivery_id(contract, matrix.sent)
    enrolled = {p.person.nir for p in matrix.profiles if p.population != "never"}
    assert set(matrix.printed) == enrolled
    deliveries = matrix.deliveries(contract)
    assert deliveries
    for record in deliveries:
        sent = by_id[header(record, "ce_id") or ""]
        assert matrix.printed[sent.event["subject"]] == header(record, "ce_subject")


def test_every_withdrawal_sent_an_erasure_notice(bus: Bus, matrix: Matrix) -> None:
    """And every release from a contract following the enrolled only (sent by the workers)."""
    for contract in matrix.contracts:
        notices = matrix.notices(contract)
        expected = sorted((reason, bus.pseudonym(contract, person))
                          for reason, person in matrix.expected_notices(contract))
        found = []
        for notice in notices:
            _, datum = bus.decoder.decode(notice.value)
            assert notice.key == datum["subject_pseudonym"].encode()
            assert datum["subject_pseudonym"] == header(notice, "ce_subject")
            assert datum["contract_id"] == contract.id
            found.append((datum["reason"], datum["subject_pseudonym"]))
        assert sorted(found) == expected, contract.id


async def test_consume_prints_the_deliveries_as_cloudevents(bus: Bus, matrix: Matrix) -> None:
    contract = matrix.contracts[0]
    records = matrix.topics[contract.id]
    by_id = bus.by_delivery_id(contract, matrix.sent)
    fields = contract.datasets[BOURSIER]
    for attempt in ("first run", "second run, same consumer group"):
        code, out, err = await bus.run_cli("consume", contract.id, "--from-beginning",
                                           "--max", str(len(records)), "--timeout", "30")
        assert code == 0, err
        lines = [json.loads(line) for line in out.splitlines()]
        assert len(lines) == len(records), f"{attempt}: {len(lines)} lines\n{err}"
        deliveries = [e for e in lines if e["type"] == BOURSIER]
        assert {by_id[e["id"]].id for e in deliveries} == matrix.expected_delivered(contract), (
            attempt)
        for event in deliveries:
            sent = by_id[event["id"]]
            assert set(event) == {"specversion", "id", "source", "type", "subject", "time",
                                  "data", "contract", "purpose", "legalbasis", "expiresat"}
            assert event["subject"] == bus.pseudonym(contract, matrix.profile_of(sent).person)
            assert event["source"] == "cnous"
            assert (event["contract"], event["purpose"], event["legalbasis"]) == (
                contract.id, contract.purpose, contract.legal_basis)
            published = published_json(sent.event)
            assert event["data"] == {f: published[f] for f in fields}
            decided = matrix.decisions[(sent.id, contract.id)]["decided_at"]
            assert parse_day(event["expiresat"]) == (
                decided + timedelta(milliseconds=contract.retention_ms)).date()
        notices = [e for e in lines if e["type"] == "erasure_notice"]
        assert len(notices) == len(matrix.notices(contract))
        assert sorted(e["data"]["reason"] for e in notices) == sorted(
            reason for reason, _ in matrix.expected_notices(contract))


# --- companies -------------------------------------------------------------------------------


VIGILANCE, FISCALE = "attestation_vigilance", "attestation_fiscale"


@dataclass
class CompanyCase:
    union: Contract
    enrolled: Contract
    sirens: list[str]
    sent: list[Sent]
    decisions: dict[tuple[str, str], dict[str, Any]]
    union_records: list[Record]
    enrolled_records: list[Record]
    printed: list[dict[str, str]]


@pytest.fixture(scope="module")
async def company_case(bus: Bus) -> CompanyCase:
    union = bus.contract("co-union", {VIGILANCE: ["statut", "date_fin_validite"],
                                      FISCALE: ["statut"]})
    enrolled = bus.contract("co-enr", {VIGILANCE: ["statut"]}, population="enrolled")
    await bus.apply(union, enrolled)
    sirens = fresh_companies(3)
    code, out, err = await bus.run_cli("population", "add", enrolled.id, sirens[0])
    assert code == 0, err
    start = await audit_start(bus.settings)
    sent = await bus.publish([*(event_for(VIGILANCE, s) for s in sirens),
                              *(event_for(FISCALE, s) for s in sirens[:2])])
    decisions = await bus.decisions(
        start, sent, [union, enrolled],
        lambda s, c: c is union or s.event["subject"] == sirens[0])
    union_records, enrolled_records = await asyncio.gather(
        bus.delivered(union, 5), bus.delivered(enrolled, 1))
    return CompanyCase(union, enrolled, sirens, sent, decisions, union_records,
                       enrolled_records, [json.loads(line) for line in out.splitlines()])


def test_companies_are_delivered_under_their_siren(bus: Bus, company_case: CompanyCase) -> None:
    case = company_case
    assert case.printed == [{"subject": case.sirens[0], "pseudonym": case.sirens[0]}]
    by_id = bus.by_delivery_id(case.union, case.sent)
    assert {header(r, "ce_id") for r in case.union_records} == set(by_id)
    for record in case.union_records:
        sent = by_id[header(record, "ce_id") or ""]
        assert record.key == sent.event["subject"].encode()
        assert header(record, "ce_subject") == sent.event["subject"]
        assert sent.subject_ref == sent.event["subject"]
    (only,) = case.enrolled_records
    first = next(s for s in case.sent if s.event["subject"] == case.sirens[0]
                 and s.event["type"] == VIGILANCE)
    assert (header(only, "ce_id"), only.key) == (bus.delivery_id(case.enrolled, first),
                                                 case.sirens[0].encode())
    for sent in case.sent:
        audit = case.decisions[(sent.id, case.union.id)]
        assert (audit["decision"], audit["subject_ref"]) == ("delivered", sent.event["subject"])
        if sent.event["type"] == VIGILANCE:
            if sent is first:
                assert case.decisions[(sent.id, case.enrolled.id)]["reason"] is None
            else:  # a company the contract does not follow: no decision about it
                assert (sent.id, case.enrolled.id) not in case.decisions
        else:
            assert (sent.id, case.enrolled.id) not in case.decisions


def test_a_contract_on_two_datasets_delivers_the_union_of_their_projections(
        bus: Bus, company_case: CompanyCase) -> None:
    case = company_case
    union_schema, _ = bus.decoder.writer(bus.applied[case.union.id].schema_id)
    assert isinstance(union_schema, list), "a two-dataset contract registers a union"
    names = {r["circulation"]["dataset"]: f"{r['namespace']}.{r['name']}" for r in union_schema}
    by_id = bus.by_delivery_id(case.union, case.sent)
    for record in case.union_records:
        sent = by_id[header(record, "ce_id") or ""]
        dataset = sent.event["type"]
        _, (branch, datum) = bus.decoder.decode(record.value)
        assert branch == names[dataset]
        fields = case.union.datasets[dataset]
        published = published_json(sent.event)
        assert json_form(datum) == {f: published[f] for f in fields}
        assert header(record, "ce_type") == dataset


async def test_consume_reads_a_union_delivery_topic(bus: Bus, company_case: CompanyCase) -> None:
    case = company_case
    code, out, err = await bus.run_cli("consume", case.union.id, "--from-beginning",
                                       "--max", "5", "--timeout", "30")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    by_id = bus.by_delivery_id(case.union, case.sent)
    assert {e["id"] for e in lines} == set(by_id)
    for event in lines:
        sent = by_id[event["id"]]
        fields = case.union.datasets[sent.event["type"]]
        published = published_json(sent.event)
        assert event["data"] == {f: published[f] for f in fields}
        assert event["subject"] == sent.event["subject"]


# --- unlinkability -----------------------------------------------------------------------------


INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T(\d{2}:\d{2}:[\d.]+)(Z|[+-]\d{2}:\d{2})")
"""A header value that is an RFC 3339 instant; the bus may only tell a day (midnight UTC)."""
CONSTANT_HEADERS = {"ce_specversion", "ce_source", "ce_type", "content-type", "ce_contract",
                    "ce_purpose", "ce_legalbasis"}
"""What deliveries may carry alike: the CloudEvents version, the topic's provider and dataset,
the content type (the catalog's constants), and two contracts' terms when they are worded
alike (the contracts' constants, public acts)."""
DAY_HEADERS = {"ce_time", "ce_expiresat"}


def test_two_subscribers_share_no_value_the_bus_added(bus: Bus, matrix: Matrix) -> None:
    """Two administrations holding deliveries of the same events cannot join them on anything
    the bus added: not the key, not the id, not a time finer than the day. What they may share
    is the catalog's constants, the day, and the event's data as their contracts name it; the
    Kafka record timestamp and the moment of the push remain (ARCHITECTURE.md, threat model)."""
    per_subscriber: dict[str, dict[str, Record]] = {}
    for contract in matrix.contracts:
        by_id = bus.by_delivery_id(contract, matrix.sent)
        for record in matrix.deliveries(contract):
            sent = by_id[header(record, "ce_id") or ""]
            per_subscriber.setdefault(contract.subscriber, {})[sent.id] = record
            for name, value in record.headers:
                moment = INSTANT.fullmatch(value.decode())
                assert moment is None or moment.groups() == ("00:00:00", "Z"), (
                    f"{name} tells more than the day")
    compared = 0
    subscribers = sorted(per_subscriber)
    for index, first in enumerate(subscribers):
        for second in subscribers[index + 1:]:
            for event_id in per_subscriber[first].keys() & per_subscriber[second].keys():
                one, other = per_subscriber[first][event_id], per_subscriber[second][event_id]
                assert one.key != other.key
                shared = set(one.headers) & set(other.headers)
                assert {name for name, _ in shared} <= CONSTANT_HEADERS | DAY_HEADERS, shared
                compared += 1
    assert compared, "no event reached two subscribers: the check above proved nothing"
