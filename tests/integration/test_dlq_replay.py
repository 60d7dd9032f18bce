"""A dead letter replayed once its cause is fixed, on the real broker with the session's workers.

The cause: an event framed with a schema id the registry does not hold yet (a provider's
schema registered in a registry the bus's had not caught up with). The worker cannot decode
it: a dead letter (``DecodeError``, no field), and the worker remembers the id as missing.
Replayed before the cause is fixed, it fails again: a new letter at the same origin, and the
command exits 1 saying so. Once the schema is registered under that id, ``circulation dlq
replay`` writes a marker on the event's partition; the worker owning it reads the event again
and routes it: delivered once, with the delivery id any routing of that event gives, its audit
record marked ``replay``, and the audit chains still verify. A second replay delivers again
with the *same* id (a duplicate the subscriber recognises), never another.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from schemas.codec import frame, unframe
from streams.kafka import clients
from streams.routing.replay_markers import REPLAY_HEADER, REPLAY_KEY, encode_marker
from tests.integration.routing_harness import (
    CATALOG,
    RUN,
    Bus,
    Reader,
    Sent,
    audit_start,
    dlq_start,
    end_offsets,
    event_for,
    fresh_people,
    header,
    read_all,
)

pytest_plugins = ("tests.integration.routing_harness",)
pytestmark = pytest.mark.integration

BOURSIER = "statut_etudiant_boursier"
TOPIC = "provider.cnous.statut_etudiant_boursier"
CLI_WAIT = 180.0


def _schema_variant(tag: str) -> dict[str, Any]:
    """The dataset's latest schema with a doc of its own: the same record to any reader, and
    new content to the registry, hence a new id."""
    return {**CATALOG.dataset(BOURSIER).latest.raw, "doc": f"replay test {tag}"}


async def _letter_of(bus: Bus, start: Any, sent: Sent) -> dict[str, Any]:
    """The dead letter of ``sent`` (its coordinates), once written."""
    def mine(record: Any) -> bool:
        letter = bus.audit(record)
        return (letter["origin_topic"], letter["origin_partition"],
                letter["origin_offset"]) == (sent.topic, sent.partition, sent.offset)

    async with Reader(bus.settings, start, mine) as reader:
        (record,) = await reader.until(lambda found: len(found) >= 1, "the dead letter",
                                       bus.workers)
    return bus.audit(record)


async def _replay_audits(bus: Bus, start: Any, sent: Sent, contract_id: str,
                         expected: int) -> list[dict[str, Any]]:
    """The audit records of ``sent`` for ``contract_id`` from ``start``, once ``expected`` of
    them are marked replay (other contracts on the dataset decide the event too)."""
    def replays(records: list[Any]) -> list[dict[str, Any]]:
        return [a for a in map(bus.audit, records)
                if (a["event_id"], a["contract_id"], a["replay"]) == (sent.id, contract_id, True)]

    async with bus.audit_reader(start, {sent.subject_ref}) as reader:
        await reader.until(lambda found: len(replays(found)) >= expected,
                           f"{expected} replayed audit record(s)", bus.workers)
        return [a for a in map(bus.audit, await reader.drain())
                if (a["event_id"], a["contract_id"]) == (sent.id, contract_id)]


async def test_a_dead_letter_is_replayed_once_its_cause_is_fixed(bus: Bus) -> None:
    contract = bus.contract("replay", {BOURSIER: ["echelon", "statut"]})
    await bus.apply(contract)
    person, other = fresh_people(2)
    # An event routed first: every schema the workers write with is registered by now.
    await bus.publish([event_for(BOURSIER, other)])
    await bus.delivered(contract, 1)

    probe = bus.registry.register(f"rt-replay-probe-{RUN}-value", _schema_variant(f"{RUN}-p"))
    missing = probe + 1  # the registry hands out ids in order: the next one is not there yet
    prepared = bus.publisher.prepare(event_for(BOURSIER, person))
    _, body = unframe(prepared.value)
    letters_start, audits_start = await dlq_start(bus.settings), await audit_start(bus.settings)
    deliveries_start = await end_offsets(bus.settings, [contract.delivery_topic])
    written = await (await bus.publisher.send(replace(prepared, value=frame(missing, body))))
    sent = Sent(event={"id": prepared.event_id, "source": "cnous", "type": BOURSIER},
                topic=prepared.topic, partition=written.partition, offset=written.offset,
                subject_ref=prepared.key.decode())

    letter = await _letter_of(bus, letters_start, sent)
    assert letter["error"].startswith("DecodeError: ")
    assert "unknown schema id" in letter["error"]
    assert letter["schema_id"] == missing
    assert letter["field"] is None

    code, out, err = await bus.run_cli("dlq", "list", "--reason", "DecodeError", "--json",
                                       timeout=CLI_WAIT)
    assert code == 0, err
    (listed,) = json.loads(out)["reasons"]
    assert listed["reason"] == "DecodeError"
    assert listed["count"] >= 1
    assert TOPIC in listed["origin_topics"]
    assert person.nir not in out

    # Replayed before its cause is fixed: it fails again, a new letter at the same origin.
    since = letter["failed_at"].astimezone(UTC).isoformat()
    again_start = await dlq_start(bus.settings)
    code, out, err = await bus.run_cli("dlq", "replay", "--reason", "DecodeError", "--since",
                                       since, timeout=CLI_WAIT)
    assert code == 1, out + err
    assert "asked a replay of 1 record(s) in 1 marker(s) on 1 partition(s)" in out
    assert "failed again: 1 (DecodeError)" in " ".join(err.split())
    again = await _letter_of(bus, again_start, sent)
    assert again["schema_id"] == missing

    # The cause fixed: the schema the event names is registered.
    fixed = bus.registry.register(f"rt-replay-{RUN}-value", _schema_variant(RUN))
    assert fixed == missing, "another schema took the id the event names: run the test again"

    code, out, err = await bus.run_cli("dlq", "replay", "--reason", "DecodeError", "--since",
                                       since, timeout=CLI_WAIT)
    assert code == 0, out + err
    assert "asked a replay of 1 record(s) in 1 marker(s) on 1 partition(s)" in out
    assert "routed again: 1 record(s), none failed again" in " ".join(out.split())
    expected_id = bus.delivery_id(contract, sent)

    audits = await _replay_audits(bus, audits_start, sent, contract.id, expected=1)
    assert [(a["decision"], a["replay"], a["delivery_id"]) for a in audits] == [
        ("delivered", True, expected_id)]
    deliveries = await _deliveries_of(bus, deliveries_start, contract.delivery_topic,
                                      expected_id)
    assert [header(r, "ce_id") for r in deliveries] == [expected_id]

    code, out, err = await bus.run_cli("audit", "verify", timeout=CLI_WAIT)
    assert code == 0, out + err

    # Replayed again: the same delivery id, never another.
    code, out, err = await bus.run_cli("dlq", "replay", "--reason", "DecodeError", "--since",
                                       since, timeout=CLI_WAIT)
    assert code == 0, out + err
    audits = await _replay_audits(bus, audits_start, sent, contract.id, expected=2)
    assert {a["delivery_id"] for a in audits} == {expected_id}
    everything = await read_all(bus.settings, deliveries_start)
    assert {header(r, "ce_id") for r in everything} == {expected_id}


async def _deliveries_of(bus: Bus, start: Any, topic: str, delivery_id: str) -> list[Any]:
    """The records of ``topic`` from ``start`` once one has ``delivery_id``, read to the end."""
    async with Reader(bus.settings, {tp: o for tp, o in start.items() if tp.topic == topic},
                      ) as reader:
        await reader.until(lambda found: any(header(r, "ce_id") == delivery_id for r in found),
                           "the replayed delivery", bus.workers)
        return await reader.drain()



async def test_a_forged_marker_replays_only_its_partition_s_records_with_their_own_ids(
        bus: Bus) -> None:
    """A provider may write its own topics, so it can forge a marker: at worst the records
    before it on that partition are delivered again with their own ids. A garbled marker, or
    one naming an offset after its own, is a dead letter naming ``value``; routing goes on."""
    contract = bus.contract("forged-marker", {BOURSIER: ["echelon"]})
    await bus.apply(contract)
    first, later = fresh_people(2)
    (sent,) = await bus.publish([event_for(BOURSIER, first)])
    await bus.delivered(contract, 1)
    letters_start, audits_start = await dlq_start(bus.settings), await audit_start(bus.settings)
    producer = AIOKafkaProducer(**clients.connection_options(bus.settings), acks="all")
    await producer.start()
    try:
        forged = {}
        for name, value in (("replay", encode_marker([sent.offset])), ("garbled", b"{"),
                            ("ahead", json.dumps({"offsets": [sent.offset + 10**6]}).encode())):
            written = await producer.send_and_wait(sent.topic, value, key=REPLAY_KEY,
                                                   partition=sent.partition,
                                                   headers=[(REPLAY_HEADER, b"1")])
            forged[name] = written.offset
    finally:
        await producer.stop()
    after = await bus.publish([event_for(BOURSIER, later)])

    audits = await _replay_audits(bus, audits_start, sent, contract.id, expected=1)
    assert [(a["replay"], a["delivery_id"]) for a in audits] == [
        (True, bus.delivery_id(contract, sent))]
    delivered = await bus.delivered(contract, 3)
    assert sorted(str(header(r, "ce_id")) for r in delivered) == sorted(
        [bus.delivery_id(contract, sent)] * 2 + [bus.delivery_id(contract, after[0])])

    def refused(record: Any) -> bool:
        letter = bus.audit(record)
        return (letter["origin_topic"], letter["origin_partition"]) == (
            sent.topic, sent.partition) and letter["origin_offset"] in forged.values()

    async with Reader(bus.settings, letters_start, refused) as reader:
        found = await reader.until(lambda records: len(records) >= 2, "2 dead letters",
                                   bus.workers)
    letters = {bus.audit(r)["origin_offset"]: bus.audit(r) for r in found}
    assert sorted(letters) == sorted([forged["garbled"], forged["ahead"]])
    assert {(x["field"], x["error"].split(":")[0]) for x in letters.values()} == {
        ("value", "MarkerRefused")}
    bus.workers.check_alive()
