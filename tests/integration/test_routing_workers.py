"""Two workers share the routing, and nothing invalid stops it.

- **Two workers**: both session workers own provider partitions; a contract applied while both
  run is followed by both (events on every partition of the provider topic, hence routed by
  each worker owning one, are all delivered).
- **Dead letters**: records a provider should never have written (bytes that are not the
  Confluent wire format, a truncated Avro body, a value breaking the catalog's constraints, a
  record without CloudEvents headers, a tombstone, a raw NIR as subject) each become one record
  on ``bus.dlq`` naming their origin topic, partition and offset, the raw NIR left out; events
  published after them, on the same partition and on every other, are routed as usual.
- Dead-letter edge cases (an unknown schema id, a raw NIR in any header), shown on the router
  itself with the real registry, so that no poison record is left on the shared provider topics.
"""

from __future__ import annotations

import struct
import uuid
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
from streams.kafka import clients
from streams.kafka.topics import DLQ
from streams.privacy.pseudonyms import Pseudonymiser
from streams.privacy.secret import pseudonym_secret
from streams.routing.records import SourceRecord
from streams.routing.router import Router
from streams.state.bus_state import BusState
from tests.conftest import Services
from tests.integration.routing_harness import (
    CATALOG,
    Bus,
    Reader,
    audit_start,
    dlq_start,
    event_for,
    fresh_people,
    header,
)
from tests.raw_nir_scan import RAW_NIR_MARKER

pytest_plugins = ("tests.integration.routing_harness",)

BOURSIER = "statut_etudiant_boursier"
TOPIC = "provider.cnous.statut_etudiant_boursier"


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
        assert {s.id for s in sent} <= {header(r, "ce_id") for r in delivered}
        if await _owners(bus) == owners:  # no rebalance meanwhile: we know who routed what
            assert set(bus.workers.client_ids) <= {owners[s.partition] for s in sent}
            return
    pytest.fail("the router group kept rebalancing: cannot tell which worker routed what")


async def test_bad_records_become_dead_letters_and_routing_goes_on(bus: Bus) -> None:
    contract = bus.contract("dead-letters", {BOURSIER: ["echelon", "statut"]})
    await bus.apply(contract)
    person, raw = fresh_people(2)
    reference = bus.reference(person)
    dataset = CATALOG.dataset(BOURSIER)
    schema = dataset.latest
    registration = register_versions(bus.registry, value_subject(TOPIC), dataset.versions)[-1]
    assert registration.version == schema.version
    template = event_for(BOURSIER, person)
    datum = from_json(schema.parsed, template["data"])
    valid = frame(registration.schema_id, encode(schema.parsed, datum))
    out_of_range = frame(registration.schema_id,
                         encode(schema.parsed, {**datum, "echelon": "9"}))
    bad: dict[str, tuple[bytes, bytes | None, list[tuple[str, bytes]], str]] = {
        "not wire format": (reference.encode(), b"\x07 definitely not Avro",
                            ce_headers(reference), "FramingError"),
        "truncated Avro": (reference.encode(), valid[:7], ce_headers(reference), "DecodeError"),
        "constraint": (reference.encode(), out_of_range, ce_headers(reference),
                       "ValidationError"),
        "no CloudEvents id": (reference.encode(), valid,
                              [h for h in ce_headers(reference) if h[0] != "ce_id"],
                              "ValueError"),
        "tombstone": (reference.encode(), None, ce_headers(reference), "DecodeError"),
        "raw NIR": (raw.nir.encode(), valid,
                    [*ce_headers(raw.nir), (RAW_NIR_MARKER, b"deliberate bad input")],
                    "InvalidIdentifier"),
    }
    dead_start = await dlq_start(bus.settings)
    start = await audit_start(bus.settings)
    origins: dict[tuple[int, int], str] = {}
    stamps: dict[str, int] = {}
    producer = AIOKafkaProducer(**clients.connection_options(bus.settings), acks="all")
    await producer.start()
    try:
        for case, (key, value, headers, _) in bad.items():
            written = await producer.send_and_wait(TOPIC, value, key=key, headers=headers)
            origins[(written.partition, written.offset)] = case
            stamps[case] = written.timestamp
    finally:
        await producer.stop()
    later = await bus.publish([event_for(BOURSIER, p)
                               for p in [person, *await bus.people_on_every_partition(BOURSIER)]])

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
    decisions = await bus.decisions(start, later, [contract])
    assert all(decisions[(s.id, contract.id)]["decision"] == "delivered" for s in later)
    delivered = await bus.delivered(contract, len(later))
    assert {header(r, "ce_id") for r in delivered} == {s.id for s in later}

    for case, (key, value, headers, error) in bad.items():
        letter = letters[case]
        record = letter["_record"]
        assert letter["error"].startswith(f"{error}: "), (case, letter["error"])
        assert letter["value"] == value, case
        assert letter["origin_timestamp"] == datetime.fromtimestamp(stamps[case] / 1000, UTC)
        assert record.key is None
        assert not record.headers
        kept = [(h["key"], h["value"]) for h in letter["headers"]]
        if case == "raw NIR":
            assert raw.nir.encode() not in record.value, "the raw NIR reached bus.dlq"
            assert raw.nir not in letter["error"]
            assert letter["key"] is None
            assert kept == [(k, None if k == "ce_subject" else v) for k, v in headers]
        else:
            assert letter["key"] == key
            assert kept == list(headers)


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
