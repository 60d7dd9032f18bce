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
each delivery topic), each decision audited once, and every audit chain linked: one writer per
chain through the rebalances.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from connectors.publisher import Publisher
from schemas.registry import SchemaRegistry
from streams.audit.trail import audit_ends, verify_since
from streams.dev.synthetic import Person, generate
from streams.kafka.topics import AUDIT
from streams.state.contract import Contract
from tests.conftest import Services
from tests.integration.plain_consumer import PlainDecoder
from tests.integration.private_stack import (
    CLI,
    private_settings,
    run_cli,
    stack_environment,
)
from tests.integration.routing_harness import (
    Bus,
    Offsets,
    Reader,
    Sent,
    WorkerPool,
    beginning,
    end_offsets,
    fresh_seed,
    header,
)

BOURSIER = "statut_etudiant_boursier"
RATE = 150
"""Events per second of the steady stream: enough that a worker always has batches in flight."""
BURST = 3000


@dataclass
class Rebalancing:
    """The private stack's bus, its workers, the contracts and the persons of this module."""

    bus: Bus
    env: dict[str, str]
    contracts: list[Contract]
    persons: list[Person]
    audit_start: dict[int, int]

    @property
    def workers(self) -> WorkerPool:
        return self.bus.workers

    async def add_worker(self) -> None:
        """Start one more worker and wait until every running worker owns partitions."""
        self.workers.add(self.env)
        await self.workers.wait_ready(self.bus.settings)


@contextlib.contextmanager
def _private_stack(folder: Path) -> Iterator[dict[str, str]]:
    env = stack_environment(folder)
    try:
        for step in (("local", "up"), ("schemas", "register")):
            done = run_cli(env, *step)
            assert done.returncode == 0, f"{' '.join(step)}: {done.stdout}{done.stderr}"
        yield env
    finally:
        subprocess.run([*CLI, "local", "down"], env=env, capture_output=True, check=False)


@pytest.fixture(scope="module")
async def rebalancing(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rebalancing]:
    """A private stack with two contracts on the boursier dataset and no worker yet."""
    with _private_stack(tmp_path_factory.mktemp("rebalance-stack")) as env:
        settings = private_settings(env)
        services = Services(settings.kafka_bootstrap, settings.schema_registry_url)
        workers = WorkerPool(services, tmp_path_factory.mktemp("rebalance-workers"), count=0)
        registry = SchemaRegistry(services.registry_url)
        decoder = PlainDecoder(services.registry_url)
        try:
            async with Publisher(settings, registry=registry) as publisher:
                bus = Bus(services, settings, workers, publisher, registry, decoder, env)
                contracts = [bus.contract(name, {BOURSIER: ["echelon", "statut"]})
                             for name in ("rebalance-city", "rebalance-region")]
                await bus.apply(*contracts)
                persons = await bus.people_on_every_partition(BOURSIER, per_partition=20)
                yield Rebalancing(bus, env, contracts, persons, await audit_ends(settings))
        finally:
            workers.stop()
            decoder.close()
            registry.close()


@dataclass
class Stream:
    """Publishes boursier events about ``persons`` until stopped, and keeps what it sent."""

    bus: Bus
    persons: Sequence[Person]
    sent: list[Sent] = field(default_factory=list)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)
    _grown: asyncio.Event = field(default_factory=asyncio.Event)

    def events(self, count: int) -> list[dict[str, Any]]:
        drawn = list(generate(BOURSIER, count, fresh_seed(), subjects=list(self.persons)))
        for event in drawn:
            event["id"] = str(uuid.uuid4())
        return drawn

    async def publish(self, count: int) -> None:
        self.sent += await self.bus.publish(self.events(count))
        self._grown.set()

    async def burst(self, count: int, chunk: int = 100) -> None:
        """``count`` events as fast as they can be published, ``chunk`` at a time."""
        for _ in range(count // chunk):
            await self.publish(chunk)

    async def steady(self, rate: int) -> None:
        """``rate`` events a second, in ten chunks a second, until :meth:`stop`."""
        clock = asyncio.get_running_loop().time
        while not self._stopped.is_set():
            tick = clock()
            await self.publish(max(1, rate // 10))
            await asyncio.sleep(max(0.0, tick + 0.1 - clock()))

    async def reached(self, count: int) -> None:
        """Return once at least ``count`` events are published in all."""
        while len(self.sent) < count:
            self._grown.clear()
            await self._grown.wait()

    def stop(self) -> None:
        self._stopped.set()


@contextlib.asynccontextmanager
async def steady_stream(rebalancing: Rebalancing, rate: int = RATE) -> AsyncIterator[Stream]:
    """A :class:`Stream` publishing ``rate`` events a second while the block runs."""
    stream = Stream(rebalancing.bus, rebalancing.persons)
    task = asyncio.ensure_future(stream.steady(rate))
    try:
        yield stream
    finally:
        stream.stop()
        await task


async def _delivery_ids(rebalancing: Rebalancing, contract: Contract, start: Offsets,
                        sent: Sequence[Sent]) -> Counter[str]:
    """How many times each ``ce_id`` is on the contract's delivery topic from ``start``, once
    every id the contract's subscriber must receive for ``sent`` is there."""
    bus = rebalancing.bus
    expected = set(bus.by_delivery_id(contract, sent))

    def every_one(records: list[Any]) -> bool:
        return expected <= {header(r, "ce_id") for r in records}

    async with Reader(bus.settings, start) as reader:
        await reader.until(every_one, f"{len(expected)} deliveries on "
                           f"{contract.delivery_topic}", rebalancing.workers)
        records = await reader.drain()
    return Counter(str(header(r, "ce_id")) for r in records)


async def _audited(rebalancing: Rebalancing, sent: Sequence[Sent]) -> Counter[tuple[str, str]]:
    """How many audit records each (event id, contract id) pair of ``sent`` has."""
    bus = rebalancing.bus
    ids = {s.id for s in sent}
    async with Reader(bus.settings, await beginning(bus.settings, [AUDIT])) as reader:
        records = await reader.drain()
    pairs = ((audit["event_id"], audit["contract_id"])
             for audit in (bus.audit(r) for r in records))
    return Counter(pair for pair in pairs if pair[0] in ids)


async def _delivery_start(rebalancing: Rebalancing) -> Offsets:
    """Where the contracts' delivery topics end before a scenario."""
    return await end_offsets(rebalancing.bus.settings,
                             [c.delivery_topic for c in rebalancing.contracts])


async def _assert_each_delivered_once(rebalancing: Rebalancing, start: Offsets,
                                      sent: Sequence[Sent]) -> None:
    """Every event of ``sent`` delivered once to each contract since ``start`` (and nothing
    else), each decision audited once, every audit chain linked."""
    bus = rebalancing.bus
    for contract in rebalancing.contracts:
        counts = await _delivery_ids(rebalancing, contract, {
            tp: offset for tp, offset in start.items() if tp.topic == contract.delivery_topic},
            sent)
        expected = set(bus.by_delivery_id(contract, sent))
        duplicates = {i: n for i, n in counts.items() if n > 1}
        assert not duplicates, (
            f"{sum(n - 1 for n in duplicates.values())} duplicate deliveries of "
            f"{len(duplicates)} events on {contract.delivery_topic} after a planned "
            f"rebalance\n{rebalancing.workers.report()}")
        assert set(counts) == expected, (
            f"{len(expected - set(counts))} events missing and {len(set(counts) - expected)} "
            f"unknown on {contract.delivery_topic}")
    audited = await _audited(rebalancing, sent)
    twice = [pair for pair, n in audited.items() if n > 1]
    assert not twice, f"{len(twice)} decisions audited more than once"
    assert len(audited) == len(sent) * len(rebalancing.contracts), "a decision not audited"
    trail = await verify_since(bus.settings, rebalancing.audit_start)
    assert not trail.breaks, f"audit chains broken at {trail.breaks[:5]}"


async def test_a_worker_joining_under_a_steady_stream_delivers_nothing_twice(
        rebalancing: Rebalancing) -> None:
    start = await _delivery_start(rebalancing)
    await rebalancing.add_worker()
    async with steady_stream(rebalancing) as stream:
        await stream.reached(2 * RATE)  # the first worker has routed, and has batches in flight
        await rebalancing.add_worker()
        await stream.reached(len(stream.sent) + 2 * RATE)  # both route after the rebalance
    await _assert_each_delivered_once(rebalancing, start, stream.sent)


async def test_a_worker_stopped_during_a_burst_and_a_third_added_deliver_nothing_twice(
        rebalancing: Rebalancing) -> None:
    while len(rebalancing.workers.workers) < 2:
        await rebalancing.add_worker()
    start = await _delivery_start(rebalancing)
    async with steady_stream(rebalancing) as stream:
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
