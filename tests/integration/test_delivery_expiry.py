"""A contract's retention really removes what was delivered under it, on the real broker.

A contract with a retention of seconds is applied, the session's workers route events to it
(the audit says each was delivered), and the delivery topic's beginning offsets then move past
every record it held: the broker deleted them. The wait is bounded by the retention, the local
broker's retention check interval (a few seconds, :mod:`streams.dev.localstack.kafka`) and a
margin for a loaded machine; the deliveries are counted from the audit and the topic's end
offsets, never read back, since they may already be gone by then.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from streams.kafka import clients
from streams.kafka.admin import topic_partitions
from tests.integration.routing_harness import Bus, audit_start, end_offsets, event_for

pytest_plugins = ("tests.integration.routing_harness",)

BOURSIER = "statut_etudiant_boursier"
RETENTION = "PT10S"
EXPIRY_WAIT = 180.0
"""Seconds the broker gets to delete expired deliveries before the test fails."""


async def _beginnings(bus: Bus, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = clients.consumer(bus.settings, enable_auto_commit=False)
    await consumer.start()
    try:
        return dict(await consumer.beginning_offsets(partitions))
    finally:
        await consumer.stop()


async def test_deliveries_disappear_once_the_contract_s_retention_has_passed(bus: Bus) -> None:
    contract = bus.contract("expiry", {BOURSIER: ["echelon"]}, retention=RETENTION)
    await bus.apply(contract)
    persons = await bus.people_on_every_partition(BOURSIER)
    start = await audit_start(bus.settings)
    sent = await bus.publish([event_for(BOURSIER, p) for p in persons])
    decisions = await bus.decisions(start, sent, [contract])
    assert {d["decision"] for d in decisions.values()} == {"delivered"}

    partitions = await topic_partitions(bus.settings, [contract.delivery_topic])
    held = await end_offsets(bus.settings, [contract.delivery_topic])
    assert sum(held.values()) >= len(sent)  # every delivery was written (some may be gone)
    deadline = asyncio.get_running_loop().time() + EXPIRY_WAIT
    while True:
        first = await _beginnings(bus, partitions)
        left = {tp: (first[tp], end) for tp, end in held.items() if first[tp] < end}
        if not left:
            break
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{contract.delivery_topic} still holds deliveries older than its "
                        f"retention ({RETENTION}) after {EXPIRY_WAIT:.0f}s: (beginning, end) "
                        f"by partition {left}", pytrace=False)
        await asyncio.sleep(1)
