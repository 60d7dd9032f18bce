"""Two workers share the routing, and nothing invalid stops it.

- **Two workers**: both session workers own provider partitions; a contract applied while both
  run is followed by both (events on every partition of the provider topic, hence routed by
  each worker owning one, are all delivered).
- **Poison records**: records a careless or hostile writer of a provider topic could produce
  (not the Confluent wire format, truncated Avro, a broken constraint, missing, null, repeated
  or non-UTF-8 headers, a header name that is not UTF-8, a forged source, a company on a person
  dataset, a tombstone, a raw NIR as subject or inside the event id) each become one record on
  ``bus.dlq`` naming their origin and the failing field, copying nothing of the record; a
  recorded contract that no longer compiles is audited ``contract_invalid``; events published
  after them, on the same partition and on every other, are routed as usual, and no worker
  exits.
- **Volume**: a few thousand generated hostile records (``tests/hostile_records.py``, the
  generator of the unit suite), written in one go and followed by valid events: exactly one dead
  letter each, no delivery and no audit record from any, the valid events all delivered, and
  no worker exits.
- Dead-letter edge cases (an unknown schema id, a raw NIR in any header), shown on the router
  itself with the real registry, so that no poison record is left on the shared provider topics.
"""

from __future__ import annotations

import asyncio
import random
import struct
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from schemas.catalog import Catalog
from schemas.codec import encode, frame, from_json
from schemas.identifiers import complete_nir
from schemas.registration import register_versions, value_subject
from schemas.registry import SchemaRegistry
from schemas.serde import AvroSerde
from streams.dev.synthetic import Person
from streams.kafka import clients
from streams.kafka.partitioning import subject_partition
from streams.kafka.topics import CONTRACTS, DLQ
from streams.privacy.pseudonyms import Pseudonymiser
from streams.privacy.secret import pseudonym_secret
from streams.routing.records import SourceRecord
from streams.routing.router import Router
from streams.state.bus_state import BusState
from streams.state.contract import Contract
from streams.state.fences import positions_after, raise_fences
from tests import hostile_inputs
from tests.conftest import Services
from tests.hostile_records import HostileRecords, ProviderRecord, Valid
from tests.integration.routing_harness import (
    CATALOG,
    RUN,
    Bus,
    Reader,
    audit_start,
    dlq_start,
    event_for,
    fresh_companies,
    fresh_people,
    header,
    read_all,
)
from tests.raw_header_names import RawHeaderName, has_raw_names, send_with_raw_names
from tests.raw_nir_scan import RAW_NIR_MARKER

pytest_plugins = ("tests.integration.routing_harness",)

BOURSIER = "statut_etudiant_boursier"
TOPIC = "provider.cnous.statut_etudiant_boursier"
OFF_PARTITION = "off its subject's partition"
"""A valid event a producer placed on another partition than its key's: it would be decided
against another partition's state."""


def ce_headers(subject: str, event_id: str | None = None) -> list[tuple[str, bytes]]:
    """The CloudEvents binary-mode headers a provider's record carries."""
    return [("ce_specversion", b"1.0"), ("ce_id", (event_id or str(uuid.uuid4())).encode()),
            ("ce_source", b"cnous"), ("ce_type", BOURSIER.encode()),
            ("ce_subject", subject.encode()), ("ce_time", b"2026-09-01T08:00:00.000Z"),
            ("content-type", b"application/avro")]


async def _owners(bus: Bus) -> dict[int, str]:
    """Which member (client id) owns each partition of the boursier topic now."""
    owned = await bus.workers.assignments(bus.settings)
    for client in bus.workers.client_ids:
        assert owned.get(client), f"{client} owns no partition: {owned}"
    return {tp.partition: client for client, tps in owned.items() for tp in tps
            if tp.topic == TOPIC}


async def test_both_workers_route_and_follow_a_contract_applied_while_they_run(
        bus: Bus) -> None:
    partitions = set(range(await bus.partition_count(BOURSIER)))
    contract = bus.contract("two-workers", {BOURSIER: ["est_boursier", "echelon"]})
    await bus.apply(contract)  # both workers are running
    for _ in range(3):  # another session's worker joining or leaving moves partitions: retry
        owners = await _owners(bus)
        assert set(owners) == partitions, owners
        assert set(bus.workers.client_ids) <= set(owners.values()), (
            f"one of our workers owns no partition of {TOPIC}: {owners}")
        persons = await bus.people_on_every_partition(BOURSIER, per_partition=2)
        start = await audit_start(bus.settings)
        sent = await bus.publish([event_for(BOURSIER, p) for p in persons])
        assert {s.partition for s in sent} == partitions
        decisions = await bus.decisions(start, sent, [contract])
        assert all(decisions[(s.id, contract.id)]["decision"] == "delivered" for s in sent)
        delivered = await bus.delivered(contract, len(sent))
        assert set(bus.by_delivery_id(contract, sent)) <= {header(r, "ce_id") for r in delivered}
        if await _owners(bus) == owners:  # no rebalance meanwhile: we know who routed what
            assert set(bus.workers.client_ids) <= {owners[s.partition] for s in sent}
            return
    pytest.fail("the router group kept rebalancing: cannot tell which worker routed what")


async def _record_a_contract_the_catalog_no_longer_fits(bus: Bus) -> Contract:
    """A contract as it would be recorded had the catalog since lost one of its fields:
    written to ``bus.contracts`` as ``contracts apply`` writes it (fenced), without the catalog
    check that ``apply`` makes today."""
    document = bus.contract("catalogue-change", {BOURSIER: ["echelon"]}).to_record()
    document["datasets"] = {BOURSIER: ["echelon", "champ_retire_du_catalogue"]}
    broken = Contract.from_record(document)
    schema = CATALOG.bus_record("contract").latest
    producer = clients.producer(bus.settings)
    await producer.start()
    try:
        written = await producer.send_and_wait(
            CONTRACTS, bus.serde.encode_json(value_subject(CONTRACTS), schema, document),
            key=broken.id.encode())
        await raise_fences(bus.settings, producer, positions_after([written]))
    finally:
        await producer.stop()
    return broken


async def _forget_contract(bus: Bus, contract: Contract) -> None:
    """Remove a contract from the register (a tombstone), so no later session sees it."""
    producer = clients.producer(bus.settings)
    await producer.start()
    try:
        await producer.send_and_wait(CONTRACTS, None, key=contract.id.encode())
    finally:
        await producer.stop()


def _poison(bus: Bus, person: Person, raw: Person) -> dict[str, tuple[bytes | None,
                                                                      list[Any], str, str]]:
    """Records a careless or hostile writer of the topic could produce: (value, headers, the
    error type and the field each dead letter must name)."""
    reference = bus.reference(person)
    dataset = CATALOG.dataset(BOURSIER)
    schema = dataset.latest
    registration = register_versions(bus.registry, value_subject(TOPIC), dataset.versions)[-1]
    datum = from_json(schema.parsed, event_for(BOURSIER, person)["data"])
    valid = frame(registration.schema_id, encode(schema.parsed, datum))
    out_of_range = frame(registration.schema_id, encode(schema.parsed, {**datum, "echelon": "9"}))
    good = ce_headers(reference)

    def changed(name: str, value: bytes | None) -> list[tuple[str, bytes | None]]:
        return [(n, value if n == name else v) for n, v in good]

    marked = (RAW_NIR_MARKER, b"deliberate bad input")
    return {
        "not wire format": (b"\x07 definitely not Avro", good, "FramingError", ""),
        "truncated Avro": (valid[:7], good, "DecodeError", ""),
        "constraint": (out_of_range, good, "ValidationError", "data.echelon"),
        "no CloudEvents id": (valid, [h for h in good if h[0] != "ce_id"], "UnroutableRecord",
                              "ce_id"),
        "null id": (valid, changed("ce_id", None), "UnroutableRecord", "ce_id"),
        "null subject": (valid, changed("ce_subject", None), "UnroutableRecord", "ce_subject"),
        "id not UTF-8": (valid, changed("ce_id", b"\xff\xfe"), "UnroutableRecord", "ce_id"),
        "header name not UTF-8": (valid, [*good, (RawHeaderName(b"note\xff\xfe"), b"x")],
                                  "UnroutableRecord", "headers"),
        "subject twice": (valid, [*good, ("ce_subject", bus.reference(raw).encode())],
                          "UnroutableRecord", "ce_subject"),
        "forged source and type": (valid, changed("ce_source", b"dgfip"), "UnroutableRecord",
                                   "ce_source"),
        "company on a person dataset": (valid, changed("ce_subject", b"356000000"),
                                        "UnroutableRecord", "ce_subject"),
        "tombstone": (None, good, "UnroutableRecord", "value"),
        "raw NIR as subject": (valid, [*ce_headers(raw.nir), marked], "InvalidIdentifier",
                               "ce_subject"),
        "raw NIR in the id": (valid, [*changed("ce_id", f"dossier-{raw.nir}".encode()), marked],
                              "UnroutableRecord", "ce_id"),
        OFF_PARTITION: (valid, good, "UnroutableRecord", "key"),
    }


async def test_poison_records_and_a_broken_contract_never_stop_routing(bus: Bus) -> None:
    """Every bad record becomes one dead letter naming its origin and field, copying nothing of
    the record; a recorded contract that no longer compiles is audited ``contract_invalid``;
    events published after them are routed to the other contracts as usual, and no worker
    exits."""
    contract = bus.contract("dead-letters", {BOURSIER: ["echelon", "statut"]})
    await bus.apply(contract)
    broken = await _record_a_contract_the_catalog_no_longer_fits(bus)
    person, raw = fresh_people(2)
    bad = _poison(bus, person, raw)
    dead_start = await dlq_start(bus.settings)
    start = await audit_start(bus.settings)
    origins: dict[tuple[int, int], str] = {}
    stamps: dict[str, int] = {}
    producer = AIOKafkaProducer(**clients.connection_options(bus.settings), acks="all")
    await producer.start()
    try:
        count = await bus.partition_count(BOURSIER)
        home = subject_partition(bus.reference(person), count)
        elsewhere = (home + 1) % count
        for case, (value, headers, _, _) in bad.items():
            key = bus.reference(person).encode()
            if has_raw_names(headers):  # one record a Go or C producer could write
                written = await send_with_raw_names(producer, TOPIC, home, key,
                                                    value, headers)
            else:
                written = await producer.send_and_wait(
                    TOPIC, value, key=key, headers=headers,
                    partition=elsewhere if case == OFF_PARTITION else None)
            origins[(written.partition, written.offset)] = case
            stamps[case] = written.timestamp
    finally:
        await producer.stop()
    try:
        later = await bus.publish([event_for(BOURSIER, p) for p in
                                   [person, *await bus.people_on_every_partition(BOURSIER)]])

        def ours(records: list[Any]) -> dict[str, dict[str, Any]]:
            found = {}
            for record in records:
                letter = bus.audit(record)
                where = (letter["origin_partition"], letter["origin_offset"])
                if letter["origin_topic"] == TOPIC and where in origins:
                    found[origins[where]] = {**letter, "_record": record}
            return found

        async with Reader(bus.settings, dead_start) as reader:
            await reader.until(lambda records: len(ours(records)) == len(bad),
                               f"{len(bad)} dead letters", bus.workers)
            letters = ours(await reader.drain())
        decisions = await bus.decisions(start, later, [contract, broken])
    finally:
        await _forget_contract(bus, broken)
    assert all(decisions[(s.id, contract.id)]["decision"] == "delivered" for s in later)
    assert {decisions[(s.id, broken.id)]["reason"] for s in later} == {"contract_invalid"}
    delivered = await bus.delivered(contract, len(later))
    assert {header(r, "ce_id") for r in delivered} == set(bus.by_delivery_id(contract, later))
    bus.workers.check_alive()

    for case, (value, headers, error, field) in bad.items():
        letter = letters[case]
        record = letter["_record"]
        assert letter["error"].startswith(f"{error}: "), (case, letter["error"])
        assert letter["field"] == (field or None), case
        assert letter["origin_timestamp"] == datetime.fromtimestamp(stamps[case] / 1000, UTC)
        assert (record.key, record.headers) == (None, ()), case
        assert len(letter["header_names"]) == len(headers), case
        copied = [raw.nir.encode(), bus.reference(person).encode(), (value or b"")[5:]]
        for secret in (s for s in copied if len(s) >= 12):
            assert secret not in record.value, f"{case}: the dead letter copied the record"


async def _hostile_records(bus: Bus, count: int) -> list[ProviderRecord]:
    """``count`` hostile records for the boursier topic, made from valid events of fresh
    persons that are never published themselves, marked for the session's raw-NIR scan. The
    seed is the run's id (in every contract id of the run), so a failure can be replayed."""
    schema = CATALOG.dataset(BOURSIER).latest
    bases = [Valid(ProviderRecord.of(bus.publisher.prepare(event_for(BOURSIER, person))),
                   schema.parsed, schema.parsed, is_company=False)
             for person in fresh_people(40)]
    foreign = [bus.publisher.prepare(event_for(dataset.id, fresh_companies(1)[0]
                                               if dataset.subject_kind == "company"
                                               else fresh_people(1)[0])).value
               for dataset in CATALOG.datasets() if dataset.id != BOURSIER]
    maker = HostileRecords(sorted({p for d in CATALOG.datasets() for p in d.providers}),
                           [d.id for d in CATALOG.datasets()], foreign)
    rng = random.Random(RUN)
    marked = (RAW_NIR_MARKER, b"deliberate bad input")
    made = [maker.make(rng, rng.choice(bases)) for _ in range(count)]
    return [replace(record, headers=[*record.headers, marked],  # aiokafka sends no null pair
                    key=b"" if record.key is None and record.value is None else record.key)
            for record in made]


async def test_thousands_of_generated_hostile_records_are_dead_letters_and_routing_goes_on(
        bus: Bus) -> None:
    """Generated hostile records written straight to a provider topic in one go, then valid
    events on every partition: one dead letter per hostile record, none delivered or audited,
    every valid event delivered, and both workers still up."""
    contract = bus.contract("hostile-volume", {BOURSIER: ["echelon", "statut"]})
    await bus.apply(contract)
    count = hostile_inputs.QUOTAS["provider records on the broker"]
    records = await _hostile_records(bus, count)
    dead_start, start = await dlq_start(bus.settings), await audit_start(bus.settings)
    producer = AIOKafkaProducer(**clients.connection_options(bus.settings), acks="all",
                                linger_ms=20)
    await producer.start()
    try:
        with hostile_inputs.at_least("provider records on the broker"):
            futures = [await producer.send(TOPIC, r.value, key=r.key, headers=r.headers)
                       for r in records]
            written = await asyncio.gather(*futures)
            hostile_inputs.tried("provider records on the broker", len(written))
    finally:
        await producer.stop()
    origins = {(w.partition, w.offset): r.defects for w, r in zip(written, records, strict=True)}
    later = await bus.publish([event_for(BOURSIER, p)
                               for p in await bus.people_on_every_partition(BOURSIER, 2)])

    letters: list[dict[str, Any]] = []
    read = 0

    def ours(records: list[Any]) -> list[dict[str, Any]]:
        nonlocal read
        for record in records[read:]:
            letter = bus.audit(record)
            if (letter["origin_topic"] == TOPIC
                    and (letter["origin_partition"], letter["origin_offset"]) in origins):
                letters.append(letter)
        read = len(records)
        return letters

    async with Reader(bus.settings, dead_start) as reader:
        await reader.until(lambda records: len(ours(records)) >= count,
                           f"{count} dead letters", bus.workers, timeout=180)
        decisions = await bus.decisions(start, later, [contract])
        ours(await reader.drain())
    assert len(letters) == count, "a hostile record was dead-lettered twice"
    assert {(f["origin_partition"], f["origin_offset"]) for f in letters} == set(origins)
    assert all(f["field"] or f["error"].startswith(("FramingError", "DecodeError"))
               for f in letters)
    assert all(decisions[(s.id, contract.id)]["decision"] == "delivered" for s in later)
    delivered = await bus.delivered(contract, len(later))
    assert {header(r, "ce_id") for r in delivered} == set(bus.by_delivery_id(contract, later))
    hostile_ids = {dict(r.headers).get("ce_id") for r in records}
    audited = [bus.audit(r) for r in await read_all(bus.settings, start)]
    assert not [a for a in audited if (a["event_id"] or "").encode() in hostile_ids]
    bus.workers.check_alive()


# --- the router itself, on the real registry --------------------------------------------------


@pytest.fixture(scope="module")
def router(services: Services) -> Router:
    settings = services.settings()
    return Router(Catalog.load(), AvroSerde(SchemaRegistry(services.registry_url)),
                  Pseudonymiser(pseudonym_secret(settings)))


def _record(key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> SourceRecord:
    return SourceRecord(TOPIC, 0, 42, 1_790_000_000_000, key, value, headers)


def test_an_unknown_schema_id_is_a_dead_letter(router: Router) -> None:
    reference = "sr1_" + "ab" * 32
    value = struct.pack(">bI", 0, 2**31 - 1) + b"\x02"
    (letter,) = router.route([_record(reference.encode(), value, ce_headers(reference))],
                             BusState())
    assert letter.topic == DLQ


def test_a_raw_nir_in_any_header_stays_out_of_the_dead_letter(router: Router) -> None:
    nir = complete_nir("1840576451089")
    headers = [*ce_headers(nir), ("ce_partitionkey", nir.encode())]
    (letter,) = router.route([_record(nir.encode(), b"\x00\x00\x00\x00\x01\x02", headers)],
                             BusState())
    assert letter.topic == DLQ
    assert nir.encode() not in letter.value
