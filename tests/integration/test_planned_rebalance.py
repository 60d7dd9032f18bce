"""A planned rebalance delivers nothing twice and loses nothing.

A worker joining the group, or one stopped with SIGTERM, gives its partitions up only once what it
had taken is routed, written and committed; whoever takes them next reads on from there, so
duplicates are left to crashes. Each scenario runs real ``circulation worker`` processes on a
private stack, so that the group holds only this module's workers (the session's two would take
partitions of their own), under a stream of events on every partition of a provider topic routed
to two contracts:

- two workers started one after the other under a steady stream;
- SIGTERM one of two workers during a burst, then a third added.

Each ends with every published event delivered once to each contract (counted by ``ce_id`` on
each delivery topic), each decision audited once, every audit chain linked (one writer per
chain through the rebalances), and ``circulation reconcile`` clean without a duplicate. Marked
``faults`` with the crash scenarios (``test_faults.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from tests.integration.routing_harness import (
    Offsets,
    PrivateBus,
    Sent,
    private_bus,
    steady_stream,
)

pytestmark = pytest.mark.faults

BOURSIER = "statut_etudiant_boursier"
RATE = 150
"""Events per second of the steady stream: enough that a worker always has batches in flight."""
BURST = 3000


@pytest.fixture(scope="module")
async def rebalancing(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PrivateBus]:
    """A private stack with two contracts on the boursier dataset and no worker yet."""
    async with private_bus(tmp_path_factory, "rebalance", BOURSIER,
                           ("rebalance-city", "rebalance-region"), ("echelon", "statut")) as bus:
        yield bus


async def _assert_each_delivered_once(rebalancing: PrivateBus, start: Offsets,
                                      sent: Sequence[Sent]) -> None:
    """Every event of ``sent`` delivered once to each contract since ``start`` (and nothing
    else), each decision audited once, every audit chain linked."""
    bus = rebalancing.bus
    for contract in rebalancing.contracts:
        counts = {i: len(records) for i, records in
                  (await rebalancing.deliveries(contract, start, sent)).items()}
        expected = set(bus.by_delivery_id(contract, sent))
        duplicates = {i: n for i, n in counts.items() if n > 1}
        assert not duplicates, (
            f"{sum(n - 1 for n in duplicates.values())} duplicate deliveries of "
            f"{len(duplicates)} events on {contract.delivery_topic} after a planned "
            f"rebalance\n{rebalancing.workers.report()}")
        assert set(counts) == expected, (
            f"{len(expected - set(counts))} events missing and {len(set(counts) - expected)} "
            f"unknown on {contract.delivery_topic}")
    audited = await rebalancing.audited(sent)
    twice = [pair for pair, n in audited.items() if n > 1]
    assert not twice, f"{len(twice)} decisions audited more than once"
    assert len(audited) == len(sent) * len(rebalancing.contracts), "a decision not audited"
    await rebalancing.assert_chains_linked()
    found = await rebalancing.reconcile()
    assert found["duplicates"] == {"outcomes": 0, "deliveries": 0}, found


async def test_a_worker_joining_under_a_steady_stream_delivers_nothing_twice(
        rebalancing: PrivateBus) -> None:
    start = await rebalancing.delivery_start()
    await rebalancing.add_worker()
    async with steady_stream(rebalancing, RATE) as stream:
        await stream.reached(2 * RATE)  # the first worker has routed, and has batches in flight
        await rebalancing.add_worker()
        await stream.reached(len(stream.sent) + 2 * RATE)  # both route after the rebalance
    await _assert_each_delivered_once(rebalancing, start, stream.sent)


async def test_a_worker_stopped_during_a_burst_and_a_third_added_deliver_nothing_twice(
        rebalancing: PrivateBus) -> None:
    while len(rebalancing.workers.workers) < 2:
        await rebalancing.add_worker()
    start = await rebalancing.delivery_start()
    async with steady_stream(rebalancing, RATE) as stream:
        await stream.reached(RATE)
        burst = asyncio.ensure_future(stream.burst(BURST))
        await stream.reached(len(stream.sent) + BURST // 2)  # both are routing the burst
        stopped = rebalancing.workers.workers[0]
        status = await asyncio.to_thread(rebalancing.workers.terminate, stopped)
        assert status == 0, f"the worker stopped with status {status}\n{stopped.tail()}"
        await burst
        await rebalancing.add_worker()
        await stream.reached(len(stream.sent) + 2 * RATE)
    await _assert_each_delivered_once(rebalancing, start, stream.sent)
