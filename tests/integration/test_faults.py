"""Faults: every event accounted for through crashes, a broker outage and a withdrawal mid-burst.

Marked ``faults``. Each scenario runs on one private stack for the module (stopping its broker or
crashing its workers would break every other test), with its own ``circulation worker``
processes under a stream of events on every partition of a provider topic routed to two
contracts. The tests play the workers' supervisor: a worker that exited is replaced by a new
one, as in production. The workers' Faust session timeout is shortened (Faust's
``BROKER_SESSION_TIMEOUT``), so that the group notices a crashed member in seconds rather than
a minute. In order:

- ``kill -9`` a worker at seeded random points, ten times, while two route a steady stream;
- the broker stopped during routing, then started again;
- a consent withdrawal in the middle of a burst of events about persons on every partition;
- the registry stopped (SIGSTOP) for 30 s under a steady stream: ``publish`` fails naming it
  and sends nothing, routing goes on with the schemas the workers cached, nothing is
  dead-lettered.

Each ends with ``circulation reconcile`` clean: every event has one outcome per contract, every
delivery its audit record and its event.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from streams.kafka.topics import DLQ
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.ledger import SubjectLedger
from tests.integration.private_stack import component, run_cli
from tests.integration.routing_harness import (
    CATALOG,
    CLI,
    SIRET,
    Offsets,
    PrivateBus,
    Sent,
    Stream,
    audit_start,
    end_offsets,
    header,
    private_bus,
    read_all,
    steady_stream,
)

pytestmark = pytest.mark.faults

BOURSIER = "statut_etudiant_boursier"
FIELDS = ("echelon", "statut")
RATE = 100
"""Events per second of the steady stream: every worker always has batches in flight."""
SESSION_TIMEOUT = "8"
"""Seconds before the group drops a member that stopped answering (Faust's default: 60)."""
KILLS = 10
SEED = 2121
OUTAGE = 10.0
"""Seconds the broker stays down."""
REGISTRY_OUTAGE = 30.0
"""Seconds the registry does not answer."""
BURST_RATE = 500
"""Events per second of the burst around the withdrawal."""
MID_FILE_LINES = 20_000
"""Lines of the file's first dataset: enough for the registry to stop while they are written."""
SECOND_DATASET = "quotient_familial"


@pytest.fixture(scope="module")
async def faults(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PrivateBus]:
    """A private stack with two contracts on the boursier dataset; its workers are started by
    each scenario."""
    async with private_bus(tmp_path_factory, "faults", BOURSIER, ("faults-city", "faults-region"),
                           FIELDS, {"BROKER_SESSION_TIMEOUT": SESSION_TIMEOUT}) as bus:
        yield bus


async def _two_workers(faults: PrivateBus) -> None:
    """Two running workers, each owning partitions (those a scenario left exited replaced)."""
    faults.workers.restart_exited()
    while len(faults.workers.workers) < 2:
        faults.workers.add()
    await faults.workers.wait_ready(faults.bus.settings)


async def _assert_nothing_lost(faults: PrivateBus, start: Offsets, sent: Sequence[Sent]) -> None:
    """Every event of ``sent`` delivered to each contract since ``start`` (and nothing else);
    a delivery written twice carries the same id, key, headers and content both times; every
    decision audited; every audit chain linked; ``reconcile`` clean."""
    for contract in faults.contracts:
        by_id = await faults.deliveries(contract, start, sent)
        expected = set(faults.bus.by_delivery_id(contract, sent))
        assert set(by_id) == expected, (
            f"{len(expected - set(by_id))} events lost and {len(set(by_id) - expected)} "
            f"unknown on {contract.delivery_topic}\n{faults.workers.report()}")
        differing = [i for i, records in by_id.items()
                     if len({(r.key, r.value, tuple(r.headers)) for r in records}) > 1]
        assert not differing, f"{len(differing)} events delivered twice with different content"
    ids = {c.id for c in faults.contracts}
    audited = [pair for pair in await faults.audited(sent) if pair[1] in ids]
    assert len(audited) == len(sent) * len(ids), "a decision not audited"
    await faults.assert_chains_linked()
    found = await faults.reconcile()
    assert found["events"] >= len(sent), found


async def test_workers_killed_at_random_points_lose_nothing(faults: PrivateBus) -> None:
    await _two_workers(faults)
    start = await faults.delivery_start()
    chance = random.Random(SEED)
    async with steady_stream(faults, RATE) as stream:
        await stream.reached(RATE)
        for _ in range(KILLS):
            await asyncio.sleep(chance.uniform(0.5, 6.0))
            victim = chance.choice(faults.workers.workers)
            assert faults.workers.kill(victim) == -9
            assert faults.workers.restart_exited() == [-9]
        await faults.workers.wait_ready(faults.bus.settings)
        await stream.reached(len(stream.sent) + RATE)  # routed by the last two, settled
    await _assert_nothing_lost(faults, start, stream.sent)


async def test_a_broker_stopped_during_routing_and_started_again_loses_nothing(
        faults: PrivateBus) -> None:
    await _two_workers(faults)
    start = await faults.delivery_start()
    kafka = component(faults.env, "kafka")
    contract = faults.contracts[0]
    consume = await Subscriber.start(faults, contract)
    try:
        async with steady_stream(faults, RATE) as stream:
            await stream.reached(2 * RATE)
            await consume.received(set(faults.bus.by_delivery_id(contract, stream.sent[:1])))
            assert await asyncio.to_thread(kafka.stop), "the private stack's broker was not running"
            await asyncio.sleep(OUTAGE)
            started = await asyncio.to_thread(run_cli, faults.env, "local", "up")
            assert started.returncode == 0, started.stdout + started.stderr
            await faults.workers.wait_ready(faults.bus.settings, supervised=True)
            await stream.reached(len(stream.sent) + 2 * RATE)  # the publisher goes on
        await _assert_nothing_lost(faults, start, stream.sent)
        await consume.received(set(faults.bus.by_delivery_id(contract, stream.sent)))
    finally:
        await consume.stop()


class Subscriber:
    """``circulation consume CONTRACT`` running as a subscriber runs it, its output read line
    by line: the one process must see every delivery, through whatever happens meanwhile."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.ids: set[str] = set()
        self.said = bytearray()
        self.reading = asyncio.gather(self._read_deliveries(), self._read_errors())

    @classmethod
    async def start(cls, faults: PrivateBus, contract: Contract) -> Subscriber:
        return cls(await asyncio.create_subprocess_exec(
            *CLI, "consume", contract.id, "--from-beginning", "--timeout", "900",
            env=faults.bus.cli_env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE))

    async def _read_deliveries(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.ids.add(json.loads(line)["id"])

    async def _read_errors(self) -> None:
        """Its standard error read as it comes (a full pipe would stop it), the end kept."""
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.said += line
            del self.said[:-4000]

    async def received(self, expected: set[str], timeout: float = 60) -> None:
        """Until the running process printed every delivery of ``expected``; it must not have
        exited meanwhile."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not expected <= self.ids and asyncio.get_running_loop().time() < deadline:
            if self.reading.done():  # its output ended, or could not be read: say why
                self.reading.result()
            assert self.process.returncode is None, (
                f"consume exited {self.process.returncode}: {bytes(self.said)!r}")
            await asyncio.sleep(0.2)
        missing = expected - self.ids
        assert not missing, f"consume printed {len(expected) - len(missing)} of " \
                            f"{len(expected)} deliveries"

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        await asyncio.gather(self.reading, return_exceptions=True)  # its pipes closed: ends


async def test_nothing_is_delivered_after_a_withdrawal_made_in_the_middle_of_a_burst(
        faults: PrivateBus, tmp_path: Path) -> None:
    await _two_workers(faults)
    bus = faults.bus
    contract = bus.contract("faults-consent", {BOURSIER: list(FIELDS)}, consent="opt_in")
    await bus.apply(contract)
    persons = await bus.people_on_every_partition(BOURSIER, per_partition=2)
    withdrawn = persons[::2]  # one on each partition; the other one keeps consenting
    async with SubjectLedger(bus.settings, bus.serde, CATALOG) as ledger:
        await ledger.record_consent(contract.id, [bus.reference(p) for p in persons], "granted",
                                    SIRET, "counter")
    subjects = tmp_path / "withdrawn.txt"
    subjects.write_text("".join(f"{p.nir}\n" for p in withdrawn), encoding="utf-8")
    deliveries = await faults.delivery_start(contract)
    audit = await audit_start(bus.settings)

    stream = Stream(bus, BOURSIER, persons)
    burst = asyncio.ensure_future(stream.steady(BURST_RATE))
    try:
        await stream.reached(BURST_RATE)
        code, _, err = await bus.run_cli("consent", "withdraw", contract.id, "--from-file",
                                         str(subjects))
        assert code == 0, err
        returned = len(stream.sent)
        await stream.reached(returned + 1)  # the chunk being published when it returned
        first_after = len(stream.sent)
        await stream.reached(first_after + BURST_RATE)
    finally:
        stream.stop()
        await burst
    concerned = {bus.reference(p) for p in withdrawn}
    late = [s for s in stream.sent[first_after:] if s.subject_ref in concerned]
    assert len(late) >= BURST_RATE // 20, f"only {len(late)} events of the withdrawn after it"

    decisions = await bus.decisions(audit, stream.sent, [contract])
    verdicts = {(decisions[(s.id, contract.id)]["decision"],
                 decisions[(s.id, contract.id)]["reason"]) for s in late}
    assert verdicts == {("withheld", "no_consent")}, verdicts
    delivered = [s for s in stream.sent
                 if decisions[(s.id, contract.id)]["decision"] == "delivered"]
    others = [s for s in stream.sent[first_after:] if s.subject_ref not in concerned]
    assert others, "no event about a person who did not withdraw after the withdrawal"
    assert {decisions[(s.id, contract.id)]["decision"] for s in others} == {"delivered"}, \
        "the persons who did not withdraw were no longer delivered"
    assert {s.subject_ref for s in delivered} >= concerned, \
        "the withdrawn were never delivered to, before the withdrawal"
    on_topic = await faults.deliveries(contract, deliveries, delivered)
    assert not set(on_topic) & set(bus.by_delivery_id(contract, late)), \
        "delivered after the withdrawal returned"
    await _assert_nothing_lost(faults, deliveries, stream.sent)


async def test_a_registry_stopped_for_30s_fails_publish_clearly_and_loses_nothing(
        faults: PrivateBus, tmp_path: Path) -> None:
    await _two_workers(faults)
    bus = faults.bus
    start = await faults.delivery_start()
    provider = await end_offsets(bus.settings, CATALOG.provider_topics())
    dead_letters = await end_offsets(bus.settings, [DLQ])
    generated = subprocess.run([*CLI, "generate", BOURSIER, "--count", "20", "--seed", "2122"],
                               capture_output=True, text=True, check=True)
    refused = tmp_path / "refused.jsonl"
    refused.write_text(generated.stdout, encoding="utf-8")
    registry = component(faults.env, "registry").pid()
    assert registry is not None, "the private stack's registry is not running"
    async with steady_stream(faults, RATE) as stream:
        await stream.reached(RATE)
        for contract in faults.contracts:  # the workers routed, and cached the schemas
            await faults.deliveries(contract, start, stream.sent[:RATE])
        os.kill(registry, signal.SIGSTOP)
        try:
            stopped_at = asyncio.get_running_loop().time()
            code, out, err = await bus.run_cli("publish", str(refused), timeout=120)
            assert code == 1, f"publish exited {code}: {out}{err}"
            assert "schema registry" in err, err
            assert "unreachable" in err, err
            await asyncio.sleep(max(0.0, stopped_at + REGISTRY_OUTAGE
                                    - asyncio.get_running_loop().time()))
        finally:
            os.kill(registry, signal.SIGCONT)
        await stream.reached(len(stream.sent) + RATE)
    written = await read_all(bus.settings, provider)
    assert {header(r, "ce_id") for r in written} == {s.id for s in stream.sent}, \
        "the provider topics hold other events than those the stream published"
    assert await read_all(bus.settings, dead_letters) == [], "dead-lettered during the outage"
    await _assert_nothing_lost(faults, start, stream.sent)


async def test_a_registry_stopped_while_publish_is_mid_file_leaves_nothing_half_sent(
        faults: PrivateBus, tmp_path: Path) -> None:
    """``publish`` asks the registry for every schema at its start: a registry that stops
    answering once the file is half written (before the first line of its second dataset)
    neither stops it nor leaves the file half published."""
    await _two_workers(faults)
    bus = faults.bus
    file = tmp_path / "two-datasets.jsonl"
    with file.open("w", encoding="utf-8") as lines:
        for dataset, count in ((BOURSIER, MID_FILE_LINES), (SECOND_DATASET, 20)):
            subprocess.run([*CLI, "generate", dataset, "--count", str(count), "--seed", "2123"],
                           stdout=lines, text=True, check=True)
    ids = [json.loads(line)["id"] for line in file.read_text(encoding="utf-8").splitlines()]
    first_topic = CATALOG.topic_for(CATALOG.dataset(BOURSIER).providers[0], BOURSIER)
    provider = await end_offsets(bus.settings, CATALOG.provider_topics())
    registry = component(faults.env, "registry").pid()
    assert registry is not None, "the private stack's registry is not running"
    process = await asyncio.create_subprocess_exec(
        *CLI, "publish", str(file), env=bus.cli_env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    second_topic = CATALOG.topic_for(CATALOG.dataset(SECOND_DATASET).providers[0],
                                     SECOND_DATASET)
    try:
        await _until_written(bus.settings, first_topic, provider)
        os.kill(registry, signal.SIGSTOP)
        assert process.returncode is None, "publish ended before the registry stopped"
        second = {tp: o for tp, o in provider.items() if tp.topic == second_topic}
        assert await end_offsets(bus.settings, [second_topic]) == second, \
            "the second dataset was written before the registry stopped: nothing was tested"
        out, err = await asyncio.wait_for(process.communicate(), 180)
    finally:
        os.kill(registry, signal.SIGCONT)
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, f"publish exited {process.returncode}: {out!r}{err!r}"
    written = await read_all(bus.settings, provider)
    assert sorted(str(header(r, "ce_id")) for r in written) == sorted(ids), \
        "the provider topics do not hold each line of the file once"
    found = await faults.reconcile()
    assert found["events"] >= len(ids), found


async def _until_written(settings: Settings, topic: str, start: Offsets) -> None:
    """Until something was written on ``topic`` past ``start``."""
    mine = [tp for tp in start if tp.topic == topic]
    for _ in range(600):
        now = await end_offsets(settings, [topic])
        if any(now[tp] > start[tp] for tp in mine):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"publish wrote nothing on {topic} in 30 s")
