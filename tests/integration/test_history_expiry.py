"""Expired choices leave the state topics, and routing decides as it did, on the real broker.

Under three contracts of the run (``opt_in``, ``opt_out``, and ``enrolled``), fresh persons on
every partition withdraw their consent, object, or are enrolled and then removed; the running
workers route an event about each. Expiry then runs with a horizon of now (an audit retention
of nothing, which the settings would refuse: the function takes the horizon itself): it
tombstones the withdrawals' whole history and the removals, and keeps the objection, since the
``opt_out`` contract may still deliver. The workers, reading the tombstones live, decide a new
event about each person exactly as before; and the keys left, which are what compaction keeps
and what a worker rebuilding its state reads, are the objection alone: no consent under
``opt_in`` and no enrolment read as before (``tests/unit/state/test_history_expiry.py`` folds
every history so).
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import TopicPartition

from streams.dev.synthetic import Person
from streams.kafka import clients
from streams.kafka.topics import CONSENTS, POPULATION
from streams.state.contract import Contract
from streams.state.history_expiry import (
    Choice,
    expire_history,
    read_choices,
    restore_overwritten,
)
from streams.state.subjects import resolve, set_consent, set_population
from tests.integration.routing_harness import CATALOG, Bus, audit_start, event_for

pytest_plugins = ("tests.integration.routing_harness",)

BOURSIER = "statut_etudiant_boursier"


async def _routed(bus: Bus, contracts: list[Contract], enrolled: Contract,
                  persons: list[Person]) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(subject, contract) → (decision, reason) of a new event about each person, once the
    workers decided it; the enrolled contract, which follows none of them, decides nothing."""
    start = await audit_start(bus.settings)
    sent = await bus.publish([event_for(BOURSIER, p) for p in persons])
    decisions = await bus.decisions(start, sent, contracts,
                                    follows=lambda _, c: c.id != enrolled.id)
    return {(s.subject_ref, c.id): (decisions[(s.id, c.id)]["decision"],
                                    decisions[(s.id, c.id)]["reason"])
            for s in sent for c in contracts if c.id != enrolled.id}


def _mine(choices: list[Choice], contracts: list[Contract]) -> set[tuple[str, str, str]]:
    ids = {c.id for c in contracts}
    return {(c.topic, c.contract_id, c.subject) for c in choices if c.contract_id in ids}


async def test_expired_choices_are_tombstoned_and_routing_decides_as_before(bus: Bus) -> None:
    opt_in = bus.contract("expiry-in", {BOURSIER: ["echelon"]}, consent="opt_in")
    opt_out = bus.contract("expiry-out", {BOURSIER: ["echelon"]}, consent="opt_out")
    enrolled = bus.contract("expiry-enr", {BOURSIER: ["echelon"]}, population="enrolled")
    contracts = [opt_in, opt_out, enrolled]
    await bus.apply(*contracts)
    persons = await bus.people_on_every_partition(BOURSIER)
    subjects = resolve(bus.settings, [p.nir for p in persons])
    await set_consent(bus.settings, opt_in, subjects, "granted", "online_portal")
    await set_consent(bus.settings, opt_in, subjects, "withdrawn", "online_portal")
    await set_consent(bus.settings, opt_out, subjects, "withdrawn", "online_portal")
    await set_population(bus.settings, enrolled, subjects, True)
    await set_population(bus.settings, enrolled, subjects, False)
    before = await _routed(bus, contracts, enrolled, persons)
    assert set(before.values()) == {("withheld", "no_consent"), ("withheld", "objection")}

    done = await expire_history(bus.settings, bus.serde, CATALOG,
                                {c.id: c for c in contracts}, datetime.now(UTC))
    refs = {s.reference for s in subjects}
    tombstoned = [c for c in done.tombstoned if c.subject in refs]
    assert done.deferred == []
    assert sorted((c.topic, c.contract_id) for c in tombstoned) == sorted(
        [(CONSENTS, opt_in.id)] * 2 * len(refs) + [(POPULATION, enrolled.id)] * len(refs))

    assert await _routed(bus, contracts, enrolled, persons) == before
    left, _ = await read_choices(bus.settings, bus.serde, CATALOG)
    assert _mine([c for c in left if c.subject in refs], contracts) == {
        (CONSENTS, opt_out.id, ref) for ref in refs}


async def test_an_enrolment_made_again_during_a_run_outlives_the_run_s_tombstone(
        bus: Bus) -> None:
    """The window no end-offset check closes: an enrolment lands after the run read the
    partition and before the tombstone of its key. The run writes it again after the
    tombstone, so the key's latest record is the enrolment, as the person's choice was."""
    enrolled = bus.contract("expiry-again", {BOURSIER: ["echelon"]}, population="enrolled")
    await bus.apply(enrolled)
    (person,) = (await bus.people_on_every_partition(BOURSIER))[:1]
    subjects = resolve(bus.settings, [person.nir])
    await set_population(bus.settings, enrolled, subjects, False)
    before, _ = await read_choices(bus.settings, bus.serde, CATALOG)
    (removal,) = [c for c in before if c.contract_id == enrolled.id]
    tp = TopicPartition(POPULATION, removal.partition)
    read_to = {tp: removal.offset + 1}
    await set_population(bus.settings, enrolled, subjects, True)  # the run does not see it
    producer = clients.producer(bus.settings)
    await producer.start()
    try:
        tombstone = await (await producer.send(POPULATION, None, key=removal.key.encode(),
                                               partition=removal.partition))
        restored = await restore_overwritten(
            bus.settings, producer, {(tp, removal.key): tombstone.offset}, read_to)
    finally:
        await producer.stop()
    assert restored == [removal.key]
    after, _ = await read_choices(bus.settings, bus.serde, CATALOG)
    (latest,) = [c for c in after if c.key == removal.key]
    assert (latest.ended, latest.offset > tombstone.offset) == (False, True)
