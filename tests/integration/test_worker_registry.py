"""A routing worker against a registry that stops answering, and the state changes it counts.

On a private stack (its registry is stopped here with SIGSTOP, which would stall every other
test), one ``circulation worker`` process with its metrics port:

- **State changes are counted where they are applied.** ``consent grant`` and ``population add``
  run as short-lived commands; the worker's state follower applies them and its ``/metrics``
  counts each once.
- **The registry stopped.** The worker meets a schema id it has not cached (the first event of
  another dataset) while the registry does not answer. Its event loop stays free: it waits for the
  registry off the loop, stays in its consumer group, and its state follower applies a consent
  withdrawal meanwhile. Nothing is routed to a wrong place nor dead-lettered; once the registry
  answers again the waiting event is delivered, and the one published after the withdrawal is
  withheld.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.publisher import Publisher
from schemas.registry import SchemaRegistry
from streams.dev.localstack.process import ManagedProcess
from streams.kafka.topics import DLQ
from streams.state.contract import Contract
from streams.state.ledger import SubjectLedger
from tests.conftest import Services
from tests.integration.plain_consumer import PlainDecoder
from tests.integration.private_stack import private_settings, run_cli, stack_environment
from tests.integration.routing_harness import (
    CATALOG,
    SIRET,
    Bus,
    Offsets,
    Reader,
    Record,
    WorkerPool,
    audit_start,
    end_offsets,
    event_for,
    fresh_people,
)

pytest_plugins = ("tests.integration.private_stack",)

BOURSIER = "statut_etudiant_boursier"
QUOTIENT = "quotient_familial"
WAITING_LOG = '"schema registry unavailable: waiting for it"'
METRIC_WAIT = 30.0
"""Seconds for a change to show on the worker's /metrics (a fence, then one scrape)."""


@dataclass
class OneWorker:
    """A private stack with one routing worker serving its metrics, and one contract."""

    env: dict[str, str]
    bus: Bus
    contract: Contract
    metrics_url: str

    def counted(self, name: str, **labels: str) -> float:
        """The worker's current value of counter ``name`` (0 when it has no such series)."""
        text = httpx.get(self.metrics_url, timeout=5).text
        return sum(sample.value for family in text_string_to_metric_families(text)
                   for sample in family.samples
                   if sample.name == name and sample.labels.items() >= labels.items())

    async def until_counted(self, name: str, value: float, **labels: str) -> None:
        deadline = asyncio.get_running_loop().time() + METRIC_WAIT
        while (seen := self.counted(name, **labels)) < value:
            self.bus.workers.check_alive()
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"{name}{labels} is {seen}, not {value}, after {METRIC_WAIT:.0f}s\n"
                            f"{self.bus.workers.report()}", pytrace=False)
            await asyncio.sleep(0.3)
        assert seen == value, f"{name}{labels} counted {seen} times, not {value}"


@pytest.fixture(scope="module")
async def one_worker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OneWorker]:
    folder = tmp_path_factory.mktemp("registry-outage")
    env = stack_environment(folder)
    try:
        started = run_cli(env, "local", "up")
        assert started.returncode == 0, started.stdout + started.stderr
        settings = private_settings(env)
        services = Services(settings.kafka_bootstrap, settings.schema_registry_url)
        metrics_port = int(env["CIRCULATION_LOCAL_KAFKA_PORT"]) + 5  # the stack's spare ports
        workers = WorkerPool(services, folder / "worker", count=1)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("CIRCULATION_METRICS_PORT", str(metrics_port))
            workers.start()
        registry = SchemaRegistry(settings.schema_registry_url)
        decoder = PlainDecoder(settings.schema_registry_url)
        try:
            await workers.wait_ready(settings)
            async with Publisher(settings, CATALOG, registry) as publisher:
                bus = Bus(services, settings, workers, publisher, registry, decoder, env)
                contract = bus.contract("outage", {BOURSIER: ["echelon"],
                                                   QUOTIENT: ["quotient_familial"]},
                                        consent="opt_in")
                await bus.apply(contract)
                yield OneWorker(env, bus, contract, f"http://127.0.0.1:{metrics_port}/metrics")
        finally:
            workers.stop()
            decoder.close()
            registry.close()
    finally:
        run_cli(env, "local", "down")


async def test_the_worker_counts_the_consent_and_population_changes_it_applies(
        one_worker: OneWorker) -> None:
    bus, contract = one_worker.bus, one_worker.contract
    person = fresh_people(1)[0]
    for command in (("consent", "grant"), ("population", "add")):
        code, _, err = await bus.run_cli(*command, contract.id, person.nir)
        assert code == 0, err

    await one_worker.until_counted("circulation_consent_changes_total", 1,
                                   contract=contract.id, status="granted")
    await one_worker.until_counted("circulation_population_changes_total", 1,
                                   contract=contract.id, change="enrolled")


async def test_a_stopped_registry_holds_routing_but_not_the_worker(one_worker: OneWorker) -> None:
    bus, contract = one_worker.bus, one_worker.contract
    withdrawing, waiting = fresh_people(2)
    ledger = SubjectLedger(bus.settings, bus.serde, CATALOG)
    refs = [bus.reference(withdrawing), bus.reference(waiting)]
    start = await audit_start(bus.settings)
    dead_letters = await end_offsets(bus.settings, [DLQ])
    async with ledger:
        await ledger.record_consent(contract.id, refs, "granted", SIRET, "counter")
        # The worker routes one event and caches its schemas; the test caches the other
        # dataset's and the consent record's ids, to write them while the registry is stopped.
        warm = await bus.publish([event_for(BOURSIER, withdrawing)])
        await bus.decisions(start, warm, [contract])
        unseen = event_for(QUOTIENT, waiting)
        bus.publisher.prepare(unseen)
        client_id = bus.workers.client_ids[0]
        registry = ManagedProcess("registry", Path(one_worker.env["CIRCULATION_LOCAL_DATA_DIR"])
                                  / "registry").pid()
        assert registry is not None, "the private stack's registry is not running"

        os.kill(registry, signal.SIGSTOP)
        try:
            held = await bus.publish([unseen])
            await _until_logged(bus.workers, WAITING_LOG)
            await ledger.record_consent(contract.id, refs[:1], "withdrawn", SIRET, "counter")
            await one_worker.until_counted("circulation_consent_changes_total", 1,
                                           contract=contract.id, status="withdrawn")
            assert (await bus.workers.assignments(bus.settings)).get(client_id), \
                "the worker left its consumer group while the registry was stopped"
            assert not await _audited(bus, start, refs[1]), "routed while its schema was unknown"
            after = await bus.publish([event_for(BOURSIER, withdrawing)])
        finally:
            os.kill(registry, signal.SIGCONT)

    decisions = await bus.decisions(start, warm + held + after, [contract])
    verdicts = [(decisions[(s.id, contract.id)]["decision"],
                 decisions[(s.id, contract.id)]["reason"]) for s in (*held, *after)]
    assert verdicts == [("delivered", None), ("withheld", "no_consent")]
    delivered = await bus.delivered(contract, 1, event_type=QUOTIENT)
    assert len([r for r in delivered if r.key == bus.pseudonym(contract, waiting).encode()]) == 1
    async with Reader(bus.settings, dead_letters) as reader:
        assert await reader.drain() == [], "a dead letter while the registry was stopped"


async def _until_logged(workers: WorkerPool, line: str, timeout: float = 30) -> None:
    """Until the worker's log holds ``line`` (the registry's client times out at 10 s)."""
    deadline = asyncio.get_running_loop().time() + timeout
    log = workers.workers[0].log
    while line not in log.read_text(encoding="utf-8", errors="replace"):
        workers.check_alive()
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"the worker never said it waits for the registry\n{workers.report()}",
                        pytrace=False)
        await asyncio.sleep(0.3)


async def _audited(bus: Bus, start: Offsets, subject_ref: str) -> list[Record]:
    """The audit records about ``subject_ref`` written since ``start``."""
    async with bus.audit_reader(start, [subject_ref]) as reader:
        return await reader.drain()
