"""Contracts and persons' choices changing under running workers.

- **Revocation**: ``circulation contracts revoke`` stops deliveries for every event published
  after it returned, on every partition (so on every worker); what was delivered stays.
- **Validity windows**: a contract not yet in force and one no longer in force withhold with
  ``contract_inactive`` (before any population or consent rule); one valid only today delivers.
- **The withdraw-then-publish race**: in twenty rounds, each with a person of its own, a consent
  withdrawal (or a population release) is recorded and an event about that person is published
  at once. The workers' read-your-writes fence must make the change apply to that very event:
  it is never delivered, the audit says ``no_consent`` (a released person is not followed any
  more: the contract takes no decision about them and leaves no audit record), and the
  subscriber gets an erasure notice for every withdrawal (and, from the workers, one for every
  release: ``test_erasure_notices``).
- **Fences** (what makes that so, :mod:`streams.state.fences`): a withdrawal, a release and a
  revocation (even one already recorded: the retry of a command whose fences failed) have,
  once their command returned, a fence on every provider partition naming the state position
  they reached; a forged fence holds nothing up and is neither routed nor audited; what only
  looks like a fence is a dead letter.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta

from aiokafka import AIOKafkaProducer

from streams.kafka import clients
from streams.kafka.admin import existing_topics
from streams.kafka.topics import CONSENTS, CONTRACTS, POPULATION, PROVIDER_PREFIX
from streams.state.contract_store import ContractStore
from streams.state.fences import FENCE_HEADER, FENCE_KEY, encode_fence, is_fence, read_fence
from streams.state.subjects import resolve, set_consent, set_population
from tests.integration.routing_harness import (
    CATALOG,
    Bus,
    Offsets,
    Record,
    Sent,
    audit_start,
    beginning,
    dlq_start,
    end_offsets,
    event_for,
    fresh_people,
    header,
    read_all,
    today,
)

pytest_plugins = ("tests.integration.routing_harness",)

BOURSIER = "statut_etudiant_boursier"
ROUNDS = 20


async def test_after_revocation_nothing_more_is_delivered(bus: Bus) -> None:
    contract = bus.contract("revoked", {BOURSIER: ["echelon", "statut"]})
    await bus.apply(contract)
    persons = await bus.people_on_every_partition(BOURSIER)
    start = await audit_start(bus.settings)
    before = await bus.publish([event_for(BOURSIER, p) for p in persons])
    await bus.delivered(contract, len(before))

    code, out, err = await bus.run_cli("contracts", "revoke", contract.id, "--yes")
    assert code == 0, err
    assert "revoked" in out
    after = await bus.publish([event_for(BOURSIER, p) for p in persons])
    assert {s.partition for s in after} == set(range(await bus.partition_count(BOURSIER)))

    decisions = await bus.decisions(start, before + after, [contract])
    assert {(decisions[(s.id, contract.id)]["decision"],
             decisions[(s.id, contract.id)]["reason"]) for s in before} == {("delivered", None)}
    assert {(decisions[(s.id, contract.id)]["decision"],
             decisions[(s.id, contract.id)]["reason"]) for s in after} == {
        ("withheld", "contract_inactive")}
    topic = await read_all(bus.settings, await beginning(bus.settings, [contract.delivery_topic]))
    deliveries = [r for r in topic if header(r, "ce_type") != "erasure_notice"]
    assert {header(r, "ce_id") for r in deliveries} == set(bus.by_delivery_id(contract, before))


async def test_contracts_outside_their_validity_window_deliver_nothing(bus: Bus) -> None:
    day = today()
    pending = bus.contract("pending", {BOURSIER: ["echelon"]}, consent="opt_in",
                           population="enrolled", valid_from=day + timedelta(days=30))
    expired = bus.contract("expired", {BOURSIER: ["echelon"]},
                           valid_from=day - timedelta(days=60),
                           valid_until=day - timedelta(days=1))
    one_day = bus.contract("one-day", {BOURSIER: ["echelon"]}, valid_from=day, valid_until=day)
    contracts = [pending, expired, one_day]
    await bus.apply(*contracts)
    persons = await bus.people_on_every_partition(BOURSIER)
    # Enrolled and consenting under the pending contract: only its window can withhold.
    await set_population(bus.settings, pending,
                         resolve(bus.settings, [p.nir for p in persons]), True)
    await set_consent(bus.settings, pending,
                      resolve(bus.settings, [p.nir for p in persons]), "granted",
                      "counter")
    start = await audit_start(bus.settings)
    sent = await bus.publish([event_for(BOURSIER, p) for p in persons])
    decisions = await bus.decisions(start, sent, contracts)
    for s in sent:
        assert decisions[(s.id, pending.id)]["reason"] == "contract_inactive"
        assert decisions[(s.id, expired.id)]["reason"] == "contract_inactive"
        assert decisions[(s.id, one_day.id)]["decision"] == "delivered"
    delivered = await bus.delivered(one_day, len(sent))
    assert {header(r, "ce_id") for r in delivered} == set(bus.by_delivery_id(one_day, sent))
    for contract in (pending, expired):
        topic = await read_all(bus.settings,
                               await beginning(bus.settings, [contract.delivery_topic]))
        deliveries = [r for r in topic if header(r, "ce_type") != "erasure_notice"]
        assert deliveries == [], f"{contract.id} delivered something"


async def test_a_change_recorded_before_publishing_applies_to_that_event(bus: Bus) -> None:
    consent = bus.contract("race-consent", {BOURSIER: ["echelon"]}, consent="opt_in")
    population = bus.contract("race-population", {BOURSIER: ["statut"]},
                              population="enrolled")
    await bus.apply(consent, population)
    persons = fresh_people(ROUNDS)
    nirs = [p.nir for p in persons]
    await set_consent(bus.settings, consent, resolve(bus.settings, nirs), "granted",
                      "online_portal")
    await set_population(bus.settings, population, resolve(bus.settings, nirs), True)
    start = await audit_start(bus.settings)
    first = await bus.publish([event_for(BOURSIER, p) for p in persons])
    await bus.decisions(start, first, [consent, population])  # both delivered (checked below)

    after_withdrawal: list[Sent] = []
    after_release: list[Sent] = []
    for index, person in enumerate(persons):
        if index == 0:
            code, _, err = await bus.run_cli("consent", "withdraw", consent.id, person.nir)
            assert code == 0, err
        else:
            await set_consent(bus.settings, consent, resolve(bus.settings, [person.nir]),
                              "withdrawn", "online_portal")
        after_withdrawal += await bus.publish([event_for(BOURSIER, person)])
        if index == 1:
            code, _, err = await bus.run_cli("population", "remove", population.id, person.nir)
            assert code == 0, err
        else:
            await set_population(bus.settings, population,
                                 resolve(bus.settings, [person.nir]), False)
        after_release += await bus.publish([event_for(BOURSIER, person)])

    released = {s.id for s in after_release}
    decisions = await bus.decisions(start, first + after_withdrawal + after_release,
                                    [consent, population],
                                    lambda s, c: c is not population or s.id not in released)

    def verdicts(sent: list[Sent], contract_id: str) -> list[str | None]:
        return [decisions[(s.id, contract_id)]["reason"] for s in sent]

    assert verdicts(first, consent.id) == [None] * ROUNDS
    assert verdicts(first, population.id) == [None] * ROUNDS
    assert verdicts(after_withdrawal, consent.id) == ["no_consent"] * ROUNDS
    assert verdicts(after_withdrawal, population.id) == [None] * ROUNDS
    assert verdicts(after_release, consent.id) == ["no_consent"] * ROUNDS
    assert not [s for s in after_release if (s.id, population.id) in decisions], (
        "a released person's events are decided by no contract that released them")

    consent_topic = await bus.delivered(consent, ROUNDS, event_type=BOURSIER)
    deliveries = [r for r in consent_topic if header(r, "ce_type") == BOURSIER]
    assert {header(r, "ce_id") for r in deliveries} == set(bus.by_delivery_id(consent, first))
    notices = [r for r in consent_topic if header(r, "ce_type") == "erasure_notice"]
    assert sorted(header(r, "ce_subject") or "" for r in notices) == sorted(
        bus.pseudonym(consent, p) for p in persons), "one erasure notice per withdrawal"
    population_topic = await bus.delivered(population, 2 * ROUNDS, event_type=BOURSIER)
    deliveries = [r for r in population_topic if header(r, "ce_type") == BOURSIER]
    assert {header(r, "ce_id") for r in deliveries} == set(
        bus.by_delivery_id(population, first + after_withdrawal))


async def _fences_after(bus: Bus, change: Awaitable[object]) -> list[Record]:
    """The fences written on the cluster's provider partitions while ``change`` ran, once it
    returned; fails unless there is exactly one on each of them."""
    providers = await end_offsets(bus.settings,
                                  await existing_topics(bus.settings, PROVIDER_PREFIX))
    await change
    fences = await read_all(bus.settings, providers, lambda r: is_fence(r.headers))
    assert sorted((r.topic, r.partition) for r in fences) == sorted(
        (tp.topic, tp.partition) for tp in providers), "one fence on every provider partition"
    assert {r.key for r in fences} == {FENCE_KEY}
    return fences


def _advanced(before: Offsets, after: Offsets) -> Offsets:
    return {tp: end for tp, end in after.items() if end != before[tp]}


async def test_every_change_of_state_is_fenced_on_every_provider_partition(bus: Bus) -> None:
    contract = bus.contract("fenced", {BOURSIER: ["echelon"]}, consent="opt_in",
                            population="enrolled")
    await bus.apply(contract)
    (person,) = fresh_people(1)
    subjects = resolve(bus.settings, [person.nir])
    changes: list[tuple[str, Awaitable[object]]] = [
        (CONSENTS, set_consent(bus.settings, contract, subjects, "withdrawn", "online_portal")),
        (POPULATION, set_population(bus.settings, contract, subjects, False)),
    ]
    for topic, change in changes:
        before = await end_offsets(bus.settings, [topic])
        fences = await _fences_after(bus, change)
        written = _advanced(before, await end_offsets(bus.settings, [topic]))
        assert len(written) == 1, f"one record on {topic}"
        assert all(read_fence(r.value) == written for r in fences), (
            f"each fence names the position after the record on {topic}")

    store = ContractStore(bus.settings, bus.registry, CATALOG)
    revocations: list[tuple[str, Awaitable[object]]] = [
        ("revocation", store.revoke(contract.id)),
        ("revocation again", store.revoke(contract.id))]
    for what, change in revocations:
        fences = await _fences_after(bus, change)
        recorded = await end_offsets(bus.settings, [CONTRACTS])
        assert all(read_fence(r.value) == recorded for r in fences), (
            f"the fences of the {what} name every contracts partition as read or written")


async def test_a_damaged_or_forged_fence_holds_nothing_up(bus: Bus) -> None:
    contract = bus.contract("forged-fence", {BOURSIER: ["echelon"]})
    await bus.apply(contract)
    persons = await bus.people_on_every_partition(BOURSIER)
    topic = CATALOG.topic_for("cnous", BOURSIER)
    state = await end_offsets(bus.settings, [CONSENTS, POPULATION])
    forged = {"unreadable": b"\x00 not a fence", "no value": None,
              "beyond the end": encode_fence({tp: end + 10**9 for tp, end in state.items()})}
    dead_start = await dlq_start(bus.settings)
    origins: dict[tuple[int, int], str] = {}
    producer = AIOKafkaProducer(**clients.connection_options(bus.settings), acks="all")
    await producer.start()
    try:
        for partition in range(await bus.partition_count(BOURSIER)):
            for case, value in forged.items():
                written = await producer.send_and_wait(topic, value, key=FENCE_KEY,
                                                       partition=partition,
                                                       headers=[(FENCE_HEADER, b"1")])
                origins[(written.partition, written.offset)] = case
    finally:
        await producer.stop()
    start = await audit_start(bus.settings)
    sent = await bus.publish([event_for(BOURSIER, p) for p in persons])
    assert {s.partition for s in sent} == {p for p, _ in origins}, "events behind every fence"

    decisions = await bus.decisions(start, sent, [contract])
    assert {decisions[(s.id, contract.id)]["decision"] for s in sent} == {"delivered"}
    delivered = await bus.delivered(contract, len(sent))
    assert {header(r, "ce_id") for r in delivered} == set(bus.by_delivery_id(contract, sent))
    audited = [bus.audit(r) for r in await read_all(bus.settings, start)]
    assert sorted(a["event_id"] for a in audited if a["contract_id"] == contract.id) == sorted(
        s.id for s in sent), "fences are not decided on"
    letters = [bus.audit(r) for r in await read_all(bus.settings, dead_start)]
    dead = sorted(origins[(letter["origin_partition"], letter["origin_offset"])]
                  for letter in letters if letter["origin_topic"] == topic
                  and (letter["origin_partition"], letter["origin_offset"]) in origins)
    partitions = len(sent)
    assert dead == sorted(["no value"] * partitions + ["unreadable"] * partitions), (
        "what only looks like a fence is a dead letter; a readable fence is not")
