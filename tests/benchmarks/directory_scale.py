"""Routing with thousands of ``population: enrolled`` contracts on one dataset, and a routing
worker's memory and readiness with a million enrolments.

It drives only what every version of the bus has (the ``circulation worker`` process, contract
and population records, the topics) and measures from outside (broker timestamps, end offsets,
the router group's committed offsets, ``/proc``), so the same script gives the figures before
and after a change of how routing finds enrolled contracts or keeps its state.

Everything runs on a private local stack (Kafka on 29392, its controller on 29393, the registry
on 28381, the identity server on 28480: ports of its own, beside the session's stack and
``routing_throughput.py``'s), in a temporary run folder, the jar cache shared. Its handling, the
broker's warm-up, the events and the worker processes are :mod:`routing_throughput`'s.
``--partitions`` (default 6) is set as ``CIRCULATION_TOPIC_PARTITIONS`` for the stack and every
process, so every topic the bus creates has that many partitions (with 3, two workers would
split them 2:1). Every worker gets ``CIRCULATION_STATE_DIR`` (a fresh folder per measurement
but for the restart), which code without that setting ignores; each runs in a folder of its own
(Faust's data folder) with its own Faust client id (``BROKER_CLIENT_ID``) to tell group members
apart.

**1. Routing with enrolled contracts.** ``--repeat R`` rounds, each running every configuration
in turn (``enrolled-3``, then the largest, ``all-3`` and the largest with each person in 3, then
the sizes between), each on a wiped stack whose broker's JIT has settled
(:func:`routing_throughput.warm_stack`):

- ``enrolled-K, nobody enrolled`` for K in ``--enrolled`` (3, 300, 3,000): K contracts
  ``population: enrolled`` on ``quotient_familial``, none of which follows a person of the
  events;
- ``all-3``: 3 contracts ``population: all`` (``routing_throughput.py``'s fan-out 3);
- ``enrolled-K, each person in 3`` for the largest K: every event's person enrolled in 3 of
  them (the person of event i in contracts 3i, 3i+1 and 3i+2 modulo K, so that every contract
  follows some persons), the same 3 deliveries per event as ``all-3``.

Every contract has the Lyon canteen's terms, its own subscriber, ``consent: not_required``.
One ``circulation worker`` first routes warm-up events: one marker (below) and the first 1,000
events of the backlog, whose persons reach every one of 3,000 contracts in the ``each person in
3`` configuration. A worker's first delivery to a topic waits for the topic's metadata, and
aiokafka asks for every topic it knows at each new one: with 3,000 delivery topics of 6
partitions, the first deliveries took 12 minutes, the worker's event loop so busy that Faust
reported its fetch thread unresponsive, and the backlog's rate (4 events/s, against 22 with
nobody enrolled) measured that rather than routing. Once the warm-up is routed, the worker is
held (SIGSTOP) while ``--count`` events (default 10,000) are written on
``provider.cnaf.quotient_familial``, then let go on (SIGCONT): it finds the whole backlog there,
as if preloaded. The time from its start until the warm-up was routed is reported (state loaded,
delivery topics known).

The backlog is framed on every partition by one marker event before the N and one after them,
about persons enrolled in the first contract: with nobody enrolled, routing that writes no audit
record for ``not_enrolled`` writes nothing at all for an event, and there would be no written
record to time. A marker gives one delivery and its audit record in every configuration and on
every version, and the first and last events a worker routes are markers (each partition is
routed in order). So:

- routed events/s = (N + 2 × partitions) / (first to last record the worker wrote on
  ``bus.audit`` and on the first contract's delivery topic, broker timestamps), like
  ``routing_throughput.py`` (the first batch's own routing time is outside the span);
- the backlog counts as routed once the router group's committed offsets reached the provider
  topic's end (a worker commits a batch once everything it wrote for it is acknowledged);
- audit records per event = growth of ``bus.audit``'s end offsets / events routed; deliveries
  per event likewise, over the configuration's delivery topics. Markers are 2 × partitions of
  the N + 2 × partitions events, the only persons followed in the ``nobody`` configurations;
- with each: the worker's peak RSS (``VmHWM``, warm-up included), the worker's and the
  broker's CPU time per event while the backlog is routed (``/proc/<pid>/stat``: on this
  machine they share two cores, and a delivery spread over thousands of partitions costs the
  broker more than the worker), the share of CPU time the host stole, and the share other
  processes of the machine used (another session's tests).

The two ratios of the acceptance criteria are taken within their round (the same machine
state), then their median is reported: enrolled-K nobody / enrolled-3 nobody, and enrolled-K
each in 3 / all-3. A worker above ``--rss-limit`` MiB is killed and its configuration reported
as stopped (the machine has no swap; on the code that decides every contract per event, each
1,000-event batch at 3,000 contracts holds three million audit records).

Contracts are written in bulk, as ``contracts apply`` writes them (:func:`write_in_bulk`): the
same delivery topics (:func:`~streams.state.contract_store.delivery_topic_spec`), the same
schemas under the same registry subjects, the same contract records on ``bus.contracts``, then
one fence, and read back with :meth:`ContractStore.load` to check: 2 to 3 minutes for 3,000
contracts, most of it the broker creating their 18,000 partitions. Applied in one call of
:meth:`ContractStore.apply` (what the command does), 3,000 contracts took 12.7 minutes on the
development machine with 6 partitions (0.1 s a contract for the first hundred, 0.7 s by the
three thousandth: a new admin connection, a topic listing and a leader wait for each), and
two configurations of a round need them; ``--store-apply`` applies them that way all the same.
Enrolments are written by the product's :meth:`SubjectLedger.record_population` (the records
of ``population add``), one call per contract, 20 calls at a time, fenced once at the end
rather than after each call (:class:`FencedOnce`).

**2. Memory and readiness** (once, on a fresh stack): one ``enrolled`` contract, applied with
:meth:`ContractStore.apply`, and ``--enrolments`` persons (default 10⁶) enrolled in it through
:meth:`SubjectLedger.record_population`, in chunks of 50,000, timed. Readiness is seen from
outside: time to ready = from the process's start until a probe event published right after
it, one on every partition, about a person enrolled in the contract, has been delivered
(broker timestamp of the delivery). Memory is ``VmRSS`` and ``VmHWM`` from ``/proc/<pid>/status``
5 s after ready; state in memory = RSS − the RSS of the same worker with no enrolments (same
contract, same stack, measured before the enrolments are written; only the probes' persons,
10 per partition, are enrolled then).

- one worker, no enrolments: the baseline;
- one worker, with the enrolments, a fresh state folder;
- the same worker stopped (SIGTERM, waited for) and started again on the same state folder;
- two workers in the group, started together on one fresh state folder: once both are members
  of a stable group, each holding partitions, a second probe round is published; each worker's
  time to ready is when the probes of its own partitions were delivered, from its start. The
  ratio of each one's state to the one worker's is the acceptance criterion's (at most 0.6).

Progress goes to stderr; the tables to stdout. Run from the repository root::

    .venv/bin/python tests/benchmarks/directory_scale.py [--count 10000] [--repeat 1]
        [--partitions 6] [--enrolments 1000000] [--enrolled 3,300,3000] [--only memory]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import routing_throughput as rt  # this folder's: stack, warm-up, events, worker processes
from aiokafka import TopicPartition
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata
from prometheus_client.parser import text_string_to_metric_families

from connectors.publisher import OutgoingEvent
from schemas.catalog import Catalog
from schemas.registration import value_subject
from schemas.serde import AvroSerde
from streams.dev.localstack import LocalStack
from streams.dev.synthetic import people
from streams.kafka import clients
from streams.kafka.admin import ensure_topics, topic_partitions
from streams.kafka.partitioning import subject_partition
from streams.kafka.topics import AUDIT, CONTRACTS
from streams.logs import configure_logging
from streams.privacy.pseudonyms import Pseudonymiser, SubjectReferences, SubscriberPseudonyms
from streams.privacy.secret import pseudonym_secret, subject_secret
from streams.settings import Settings
from streams.state.contract import Contract, PopulationMode
from streams.state.contract_store import (
    ContractStore,
    contracts_topic_spec,
    delivery_topic_spec,
)
from streams.state.fences import positions_after, raise_fences
from streams.state.ledger import SubjectLedger
from streams.worker.app import APP_ID

PORTS = {"local_kafka_port": 29392, "local_controller_port": 29393,
         "local_registry_port": 28381, "local_identity_port": 28480}
PROVIDER_TOPIC = "provider.cnaf.quotient_familial"
IN = 3
"""Contracts following each person in the ``each person in 3`` configuration (and ``all-3``'s
fan-out)."""
TOPICS_PER_REQUEST = 50
REGISTRY_THREADS = 8
LEDGER_CALLS_AT_ONCE = 20
ENROL_CHUNK = 50_000
WARM_EVENTS = 1000
PROBES_PER_PARTITION = 10
READY_TIMEOUT = 900.0
SETTLE_SECONDS = 5.0
REPO = Path(__file__).resolve().parents[2]


def note(message: str) -> None:
    """A progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def configure(partitions: int) -> None:
    """Point :mod:`routing_throughput`'s private stack at this benchmark's ports, and every
    topic the bus creates (stack, harness, workers) at ``partitions``."""
    rt.PRIVATE_STACK = rt.PRIVATE_STACK.model_copy(update=PORTS)
    os.environ["CIRCULATION_TOPIC_PARTITIONS"] = str(partitions)


# --- contracts and enrolments ---------------------------------------------------------------


async def write_contracts(settings: Settings, contracts: list[Contract],
                          through_store: bool) -> float:
    """Write ``contracts`` (in bulk, or with :meth:`ContractStore.apply`); the seconds it took."""
    began = time.perf_counter()
    if through_store:
        with clients.schema_registry(settings) as registry:
            await ContractStore(settings, registry, Catalog.load()).apply(contracts)
    else:
        await write_in_bulk(settings, contracts)
    return time.perf_counter() - began


async def write_in_bulk(settings: Settings, contracts: list[Contract]) -> None:
    """What :meth:`ContractStore.apply` writes for new contracts, in bulk: the delivery topics
    (its specs, created ``TOPICS_PER_REQUEST`` a request), the delivery and erasure schemas
    under their subjects (several at once), every contract record, then one fence. Checked by
    reading the contracts back as routers and commands do."""
    catalog = Catalog.load()
    await ensure_topics(settings, [contracts_topic_spec(settings)])
    for start in range(0, len(contracts), TOPICS_PER_REQUEST):
        await ensure_topics(settings, [delivery_topic_spec(settings, c)
                                       for c in contracts[start:start + TOPICS_PER_REQUEST]])
    erasure = catalog.bus_record("erasure_notice").latest.text
    with clients.schema_registry(settings) as registry:
        def register(contract: Contract) -> None:
            registry.register(contract.delivery_subject, contract.delivery_schema(catalog))
            registry.register(contract.erasure_subject, erasure)

        def register_all() -> None:
            with ThreadPoolExecutor(REGISTRY_THREADS) as pool:
                list(pool.map(register, contracts))

        await asyncio.to_thread(register_all)
        serde, record = AvroSerde(registry), catalog.bus_record("contract").latest
        producer = clients.producer(settings)
        await producer.start()
        try:
            sends = [await producer.send(
                CONTRACTS, serde.encode_json(value_subject(CONTRACTS), record, c.to_record()),
                key=c.id.encode()) for c in contracts]
            written = [await sent for sent in sends]
            await raise_fences(settings, producer, positions_after(written))
        finally:
            await producer.stop()
        recorded = await ContractStore(settings, registry, catalog).load()
    missing = [c.id for c in contracts if recorded.get(c.id) != c]
    if missing:
        raise RuntimeError(f"{len(missing)} contracts not read back as written, e.g. "
                           f"{missing[0]}")


class FencedOnce(SubjectLedger):
    """The product's ledger, fenced once after all its calls (:meth:`fence`) rather than after
    each: the records are its own, but enrolling persons in 3,000 contracts is 3,000 calls, and
    each fence lists the cluster's topics (thousands of delivery topics) on two new admin
    connections before writing a record on every provider partition: about 0.2 s a call."""

    def __init__(self, settings: Settings, serde: AvroSerde, catalog: Catalog) -> None:
        super().__init__(settings, serde, catalog)
        self.written: list[RecordMetadata] = []

    async def _fenced(self, sends: list[asyncio.Future[RecordMetadata]]) -> int:
        written = [await sent for sent in sends]
        self.written += written
        return len(written)

    async def fence(self) -> None:
        await raise_fences(self._settings, self._producer, positions_after(self.written))


async def enrol(settings: Settings, chosen: Mapping[str, Sequence[str]],
                at_once: int = LEDGER_CALLS_AT_ONCE, fence_once: bool = False,
                progress: Callable[[int], None] | None = None) -> int:
    """Enrol the subject references ``chosen`` gives each contract id, through the product's
    ledger (chunks of :data:`ENROL_CHUNK`, ``at_once`` calls together, each fenced or, with
    ``fence_once``, all fenced at the end: :class:`FencedOnce`); how many it wrote."""
    calls = [(contract_id, refs[start:start + ENROL_CHUNK])
             for contract_id, refs in chosen.items()
             for start in range(0, len(refs), ENROL_CHUNK)]
    written = 0
    ledger_class = FencedOnce if fence_once else SubjectLedger
    with clients.schema_registry(settings) as registry:
        async with ledger_class(settings, AvroSerde(registry), Catalog.load()) as ledger:
            for start in range(0, len(calls), at_once):
                counts = await asyncio.gather(*(ledger.record_population(contract_id, refs, True)
                                                for contract_id, refs in
                                                calls[start:start + at_once]))
                written += sum(counts)
                if progress is not None:
                    progress(written)
            if isinstance(ledger, FencedOnce):
                await ledger.fence()
    return written


def person_refs(settings: Settings, count: int, seed: int) -> list[str]:
    """Subject references of ``count`` distinct synthetic persons, made as ``population add``
    makes them from their NIRs."""
    references = SubjectReferences(subject_secret(settings))
    return [references.for_person(person.nir) for person in people(seed, count)]


# --- worker processes -------------------------------------------------------------------------


@dataclass
class Worker:
    """A ``circulation worker`` process, when it started and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    started: float
    """Wall-clock time (``time.time()``) just before it was started."""
    log: Path
    metrics_port: int

    @property
    def client_id(self) -> str:
        return client_id(self.name)

    def memory(self) -> tuple[float, float]:
        return memory(self.process.pid)

    async def stores(self) -> float | None:
        """The worker's own count of its stores' memory, in MiB, from its metrics."""
        async with httpx.AsyncClient() as client:
            try:
                text = (await client.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
            except httpx.HTTPError:
                return None
        for family in text_string_to_metric_families(text):
            if family.name == "circulation_state_memory_bytes":
                return family.samples[0].value / 2**20
        return None

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"worker {self.name} exited ({self.process.returncode}): "
                               f"see {self.log}")


def client_id(name: str) -> str:
    return f"bench-{name}"


def start_worker(settings: Settings, run_dir: Path, name: str, state_dir: Path) -> Worker:
    """A worker in a folder of its own, with its own client id and ``state_dir``."""
    folder = run_dir / "workers" / name
    folder.mkdir(parents=True)
    environment = {
        "CIRCULATION_STATE_DIR": str(state_dir),
        "CIRCULATION_METRICS_PORT": str(METRICS_PORT + len(STARTED)),
        "BROKER_CLIENT_ID": client_id(name),  # Faust's setting: tells the members apart
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    process = rt.start_worker(settings, folder / "worker.log", environment, cwd=folder)
    STARTED.append(Worker(name, process, started, folder / "worker.log",
                          METRICS_PORT + len(STARTED)))
    return STARTED[-1]


METRICS_PORT = 28600
"""Workers serve their metrics from this port on, one port each in order of start."""

STARTED: list[Worker] = []
"""Every worker started, killed at the end if one still runs (a measurement that failed)."""


def memory(pid: int) -> tuple[float, float]:
    """A process's resident set now and at its peak (``VmRSS``, ``VmHWM``), in MiB."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


def cpu_ticks(pid: int | None) -> int:
    """User and system CPU time a process used so far, in clock ticks (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0
    return sum(int(value) for value in stat.rsplit(")", 1)[1].split()[11:13])


def cpu_per_event(pid: int | None, before: int, events: int) -> float | None:
    """Milliseconds of CPU ``pid`` used per event since it had used ``before`` ticks; None
    when it is unknown or gone (its ticks read as 0), rather than a figure that means nothing."""
    after = cpu_ticks(pid)
    if pid is None or after < before or after == 0:
        return None
    return (after - before) * 1000 / os.sysconf("SC_CLK_TCK") / events


class OtherProcesses:
    """The share of the machine's CPU time (all cores) that processes other than the stack's,
    this script's and the measured workers' used over a measurement: another test suite or
    benchmark on the same machine, which the host's steal does not show."""

    share: float | None = None

    def __init__(self, stack: LocalStack, workers: Iterable[Worker] = ()) -> None:
        self.ours = [os.getpid(), *(c.process.pid() for c in stack.components)]
        self.workers = list(workers)
        """The workers measured; those started after :meth:`begin` may be added."""

    def __enter__(self) -> OtherProcesses:
        self.begin()
        return self

    def __exit__(self, *_: object) -> None:
        self.end()

    def _pids(self) -> list[int | None]:
        return [*self.ours, *(w.process.pid for w in self.workers)]

    def begin(self) -> None:
        self._machine = _machine_ticks()
        self._ticks = {pid: cpu_ticks(pid) for pid in self._pids()}

    def end(self) -> None:
        """Called while the workers still run: their CPU time is read here."""
        (busy_before, total_before), (busy, total) = self._machine, _machine_ticks()
        if busy_before is None or busy is None or total == total_before:
            return
        ours = sum(cpu_ticks(pid) - self._ticks.get(pid, 0) for pid in self._pids())
        self.share = max(0, busy - busy_before - ours) / (total - total_before)


def _machine_ticks() -> tuple[int | None, int]:
    """CPU ticks of all cores spent by processes (user, nice, system, irq, softirq) and in
    all (steal included); (None, 0) where /proc/stat does not exist."""
    times = rt.cpu_times()
    if times is None:
        return None, 0
    return sum(times[i] for i in (0, 1, 2, 5, 6)), sum(times)


async def ends_of(settings: Settings, topics: list[str]) -> dict[TopicPartition, int]:
    """End offsets of every partition of ``topics``, asked in one request."""
    partitions = await topic_partitions(settings, topics)
    consumer = clients.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)  # unassigned, they would be asked one topic at a time
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def group(settings: Settings) -> tuple[str, dict[str, set[int]]]:
    """The router group's state and, by client id, the provider partitions (of
    ``quotient_familial``) each member holds."""
    async with clients.admin(settings) as admin:
        responses = await admin.describe_consumer_groups([APP_ID])
    for response in responses:
        for described in response.groups:
            owned: dict[str, set[int]] = {}
            for member in described[5]:
                held = owned.setdefault(member[1], set())
                if member[4]:
                    assignment = ConsumerProtocolMemberAssignment.decode(bytes(member[4]))
                    held |= {p for topic, numbers in assignment.assignment
                             if topic == PROVIDER_TOPIC for p in numbers}
            return described[2], owned
    return "Unknown", {}


# --- 1. routing with enrolled contracts -------------------------------------------------------


@dataclass(frozen=True)
class Configuration:
    label: str
    """Contract ids are ``bench-<label>-<i>``."""
    title: str
    contracts: int
    population: PopulationMode
    enrolled_in: int
    """Contracts each event's person is enrolled in (0: nobody but the markers)."""


def configurations(sizes: Sequence[int]) -> list[Configuration]:
    """Every configuration, in the order a round runs them: each pair of the acceptance
    criteria back to back, then the sizes between."""
    smallest, largest = min(sizes), max(sizes)

    def nobody(size: int) -> Configuration:
        return Configuration(f"e{size}", f"enrolled-{size}, nobody enrolled", size, "enrolled", 0)

    return [nobody(smallest), nobody(largest),
            Configuration(f"a{IN}", f"all-{IN}", IN, "all", 0),
            Configuration(f"e{largest}in{IN}", f"enrolled-{largest}, each person in {IN}",
                          largest, "enrolled", IN),
            *(nobody(size) for size in sorted(set(sizes) - {smallest, largest}))]


def measured_configurations(arguments: argparse.Namespace) -> list[Configuration]:
    """The configurations ``--pair`` asks for: one pair of the acceptance criteria, or all."""
    every = configurations(arguments.enrolled)
    if arguments.pair == "nobody":
        return every[:2]
    if arguments.pair == "each":
        return every[2:4]
    return every


@dataclass(frozen=True)
class Backlog:
    """The events to route, and the markers before and after them on every partition."""

    events: list[OutgoingEvent]
    heads: list[OutgoingEvent]
    tails: list[OutgoingEvent]
    warm: int
    """How many of the events (the first) the worker routes first, with one marker."""

    @property
    def warm_up(self) -> list[OutgoingEvent]:
        return [self.heads[0], *self.events[:self.warm]]

    @property
    def records(self) -> list[OutgoingEvent]:
        return [*self.heads, *self.events, *self.tails]

    @property
    def markers(self) -> list[OutgoingEvent]:
        return [*self.heads, *self.tails]


def backlog(settings: Settings, arguments: argparse.Namespace) -> Backlog:
    """The events and markers, and how many events warm the worker up: at least
    :data:`WARM_EVENTS`, and enough for their persons to reach every contract of the largest
    size in the ``each person in 3`` configuration."""
    partitions = arguments.partitions
    by_partition = by_partition_of(
        rt.prepared_events(settings, 20 * partitions, arguments.seed + 1), partitions, 2)
    warm = min(arguments.count, max(WARM_EVENTS, -(-max(arguments.enrolled) // IN)))
    return Backlog(rt.prepared_events(settings, arguments.count, arguments.seed),
                   [events[0] for events in by_partition.values()],
                   [events[1] for events in by_partition.values()], warm)


def by_partition_of(events: Iterable[OutgoingEvent], partitions: int,
                    least: int) -> dict[int, list[OutgoingEvent]]:
    """``events`` by the partition their subject (the key) goes to; at least ``least`` each."""
    found: dict[int, list[OutgoingEvent]] = {p: [] for p in range(partitions)}
    for event in events:
        found[subject_partition(event.key.decode(), partitions)].append(event)
    if min(len(events) for events in found.values()) < least:
        raise RuntimeError("too few synthetic events on some partition: draw more")
    return found


def enrolments(configuration: Configuration, contracts: list[Contract],
               backlog: Backlog) -> dict[str, list[str]]:
    """Subject references to enrol, by contract id: the markers' persons in the first contract
    (when it follows enrolled persons only) and, with ``enrolled_in``, the person of event i in
    contracts ``enrolled_in × i + j`` (j < ``enrolled_in``) modulo their number."""
    chosen: dict[str, list[str]] = {c.id: [] for c in contracts}
    if configuration.population == "enrolled":
        chosen[contracts[0].id] += [m.key.decode() for m in backlog.markers]
    seen: set[str] = set()
    for index, event in enumerate(backlog.events if configuration.enrolled_in else []):
        ref = event.key.decode()
        if ref in seen:  # a person drawn twice keeps the contracts of its first event
            continue
        seen.add(ref)
        for offset in range(configuration.enrolled_in):
            contract = contracts[(configuration.enrolled_in * index + offset) % len(contracts)]
            chosen[contract.id].append(ref)
    return {contract_id: refs for contract_id, refs in chosen.items() if refs}


@dataclass
class Routing:
    """One configuration measured once."""

    rate: float | None
    """Routed events/s; None when the backlog was not routed (``failure`` says why)."""
    audit: float
    deliveries: float
    peak: float
    contracts_seconds: float
    enrol_seconds: float
    warm_up: float
    """Seconds from the worker's start until it had routed the warm-up events."""
    steal: float | None
    others: float | None
    failure: str | None = None
    worker_cpu: float | None = None
    """The worker's CPU time per routed event, in ms, over the routing of the backlog."""
    broker_cpu: float | None = None
    """The broker's CPU time per routed event, in ms, over the same time: what a produce
    request's partitions cost it shows here rather than in the worker."""


async def measure_routing(settings: Settings, run_dir: Path, stack: LocalStack,
                          configuration: Configuration, backlog: Backlog, round_: int,
                          arguments: argparse.Namespace) -> Routing:
    contracts = rt.bench_contracts(configuration.label, configuration.contracts,
                                   configuration.population)
    note(f"{configuration.title}: writing {len(contracts):,} contracts")
    contracts_seconds = await write_contracts(settings, contracts, arguments.store_apply)
    chosen = enrolments(configuration, contracts, backlog)
    note(f"{configuration.title}: contracts written in {contracts_seconds:.1f} s; enrolling "
         f"{sum(map(len, chosen.values())):,} persons")
    began = time.perf_counter()
    await enrol(settings, chosen, fence_once=True)
    enrol_seconds = time.perf_counter() - began
    await rt.produce_all(settings, PROVIDER_TOPIC, backlog.warm_up)
    name = f"{configuration.label}-r{round_ + 1}"
    note(f"{configuration.title}: enrolled in {enrol_seconds:.1f} s; worker {name} routes "
         f"{len(backlog.warm_up):,} warm-up events")
    worker = start_worker(settings, run_dir, name, run_dir / "state" / name)
    failure, peak = await until_routed(settings, worker,
                                       await ends_of(settings, [PROVIDER_TOPIC]), arguments)
    measured = Routing(None, 0.0, 0.0, peak, contracts_seconds, enrol_seconds,
                       time.time() - worker.started, None, None, failure)
    if failure is None:
        await route_backlog(settings, stack, worker, contracts, backlog, measured, arguments)
    rt.stop_worker(worker.process)
    note(f"{configuration.title}: warm-up {measured.warm_up:,.0f} s; " +
         (measured.failure or f"{measured.rate:,.0f} events/s") +
         f", {measured.audit:,.4f} audit records and {measured.deliveries:,.4f} deliveries "
         f"per event, worker peak RSS {measured.peak:,.0f} MiB")
    return measured


async def route_backlog(settings: Settings, stack: LocalStack, worker: Worker,
                        contracts: list[Contract], backlog: Backlog, measured: Routing,
                        arguments: argparse.Namespace) -> None:
    """Hold the warmed worker (SIGSTOP) while the backlog is written, let it go on and time it
    routing the backlog, into ``measured``."""
    records = backlog.records
    watched = [AUDIT, contracts[0].delivery_topic]
    deliveries = [c.delivery_topic for c in contracts]
    os.kill(worker.process.pid, signal.SIGSTOP)  # the whole backlog is there when it goes on
    try:
        await rt.produce_all(settings, PROVIDER_TOPIC, records)
        provider_ends = await ends_of(settings, [PROVIDER_TOPIC])
        before = await ends_of(settings, watched)
        delivered_before = sum((await ends_of(settings, deliveries)).values())
    finally:
        os.kill(worker.process.pid, signal.SIGCONT)
    note(f"  {len(records):,} events preloaded; the worker routes them")
    broker = stack.kafka.process.pid()
    ticks = cpu_ticks(broker), cpu_ticks(worker.process.pid)
    with rt.StolenTime() as stolen, OtherProcesses(stack, [worker]) as others:
        measured.failure, measured.peak = await until_routed(settings, worker, provider_ends,
                                                             arguments)
        measured.broker_cpu = cpu_per_event(broker, ticks[0], len(records))
        measured.worker_cpu = cpu_per_event(worker.process.pid, ticks[1], len(records))
    after = await ends_of(settings, watched)
    delivered = sum((await ends_of(settings, deliveries)).values()) - delivered_before
    written = sum(end - before[tp] for tp, end in after.items() if tp.topic == AUDIT)
    measured.audit, measured.deliveries = written / len(records), delivered / len(records)
    measured.steal, measured.others = stolen.share, others.share
    if measured.failure is None:
        span = await first_and_last(settings, before, after)
        if span is None or span[1] <= span[0]:
            measured.failure = "no span of written records to time"
        else:
            measured.rate = len(records) / (span[1] - span[0])


async def until_routed(settings: Settings, worker: Worker, ends: dict[TopicPartition, int],
                       arguments: argparse.Namespace) -> tuple[str | None, float]:
    """Wait until the router group committed ``ends``: (None, or why it did not, and the
    worker's peak RSS in MiB). A worker above ``--rss-limit`` is killed."""
    deadline = time.monotonic() + arguments.route_timeout
    next_note = time.monotonic() + 30
    total, peak = sum(ends.values()), 0.0
    async with clients.admin(settings) as admin:
        while True:
            if worker.process.poll() is not None:
                return f"worker exited ({worker.process.returncode}), see {worker.log}", peak
            rss, peak = worker.memory()
            if arguments.rss_limit and rss > arguments.rss_limit:
                worker.process.kill()
                return f"stopped: worker RSS {rss:,.0f} MiB over --rss-limit", peak
            try:
                committed = await admin.list_consumer_group_offsets(APP_ID,
                                                                    partitions=list(ends))
            except KafkaError:  # the group's coordinator may not be known yet
                committed = {}
            done = sum(min(end, max(0, committed[tp].offset)) for tp, end in ends.items()
                       if tp in committed)
            if done == total:
                return None, peak
            if time.monotonic() > deadline:
                return f"not routed within {arguments.route_timeout:.0f} s", peak
            if time.monotonic() > next_note:
                note(f"  {done:,} of {total:,} provider records committed, worker RSS "
                     f"{rss:,.0f} MiB")
                next_note += 30
            await asyncio.sleep(0.5)


async def first_and_last(settings: Settings, before: dict[TopicPartition, int],
                         after: dict[TopicPartition, int]) -> tuple[float, float] | None:
    """Broker timestamps of the first and last of the records written between ``before`` and
    ``after``; None when fewer than two were."""
    consumer = clients.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    stamps: list[float] = []
    try:
        for tp, end in after.items():
            for offset in sorted({before[tp], end - 1}):
                if before[tp] <= offset < end:
                    consumer.assign([tp])
                    consumer.seek(tp, offset)
                    batch = await consumer.getmany(tp, timeout_ms=10_000, max_records=1)
                    stamps += [record.timestamp / 1000 for record in batch.get(tp, [])]
    finally:
        await consumer.stop()
    return (min(stamps), max(stamps)) if len(stamps) > 1 else None


async def routing_part(settings: Settings, run_dir: Path, arguments: argparse.Namespace,
                       warm: dict[str, Any]) -> dict[Configuration, list[Routing]]:
    """Every configuration ``--repeat`` times, interleaved, each on a wiped and warmed stack."""
    chosen = measured_configurations(arguments)
    results: dict[Configuration, list[Routing]] = {c: [] for c in chosen}
    events: Backlog | None = None
    for round_ in range(arguments.repeat):
        for configuration in chosen:
            note(f"round {round_ + 1} of {arguments.repeat}, {configuration.title}: wiping and "
                 f"warming the stack")
            stack = await restack(settings, run_dir, warm)
            if events is None:  # schema ids are the same on every wiped stack
                events = backlog(settings, arguments)
            results[configuration].append(await measure_routing(
                settings, run_dir, stack, configuration, events, round_, arguments))
    return results


async def restack(settings: Settings, run_dir: Path, warm: dict[str, Any]) -> LocalStack:
    """A wiped stack whose broker's JIT has settled, whatever ran in ``run_dir`` stopped
    first."""
    await asyncio.to_thread(rt.stack_of(run_dir).down)
    return await rt.warm_stack(settings, warm, run_dir)


# --- 2. memory and readiness ------------------------------------------------------------------


class Probes:
    """Events about persons enrolled in the contract, :data:`PROBES_PER_PARTITION` for every
    partition, each used once."""

    def __init__(self, settings: Settings, partitions: int, seed: int) -> None:
        self.pool = by_partition_of(rt.prepared_events(settings, 30 * partitions, seed),
                                    partitions, PROBES_PER_PARTITION)

    @property
    def refs(self) -> list[str]:
        return [e.key.decode() for events in self.pool.values() for e in events]

    def round(self) -> dict[int, OutgoingEvent]:
        """One unused probe for every partition."""
        return {partition: events.pop() for partition, events in self.pool.items()}


class DeliveryWatch:
    """Reads a contract's delivery topic from its end at :meth:`start` on, and tells when the
    deliveries of given events were written."""

    def __init__(self, settings: Settings, contract: Contract) -> None:
        self.settings = settings
        self.topic = contract.delivery_topic
        self.ids: SubscriberPseudonyms = Pseudonymiser(
            pseudonym_secret(settings)).for_subscriber(contract.subscriber)
        self.consumer = clients.consumer(settings, enable_auto_commit=False)
        self.seen: dict[str, float] = {}

    async def start(self) -> None:
        await self.consumer.start()
        partitions = await topic_partitions(self.settings, [self.topic])
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self.consumer.position(tp)  # resolved now, before any worker starts

    async def stop(self) -> None:
        await self.consumer.stop()

    async def delivered(self, probes: Mapping[int, OutgoingEvent],
                        workers: Sequence[Worker]) -> dict[int, float]:
        """Broker timestamp of each probe's delivery, by partition."""
        wanted = {self.ids.event_id("cnaf", e.event_id): p for p, e in probes.items()}
        deadline = time.monotonic() + READY_TIMEOUT
        while not wanted.keys() <= self.seen.keys():
            for worker in workers:
                worker.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"probes not delivered within {READY_TIMEOUT:.0f} s")
            for records in (await self.consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    self.seen[dict(record.headers)["ce_id"].decode()] = record.timestamp / 1000
        return {partition: self.seen[own] for own, partition in wanted.items()}


@dataclass
class Readiness:
    """One worker of a memory measurement."""

    title: str
    enrolments: int
    partitions: int
    ready: float
    rss: float
    hwm: float
    others: float | None
    stores: float | None
    """MiB the worker's stores keep in memory, as it reports them
    (``circulation_state_memory_bytes``; None from code without the gauge)."""


async def ready_workers(settings: Settings, run_dir: Path, stack: LocalStack,
                        contract: Contract, probes: Probes, started: Sequence[tuple[str, Path]],
                        title: str, enrolments: int) -> tuple[list[Readiness], list[Worker]]:
    """Start a worker for each (name, state folder), publish a probe on every partition, and
    measure each once ready (with two or more, once the group is stable and a second round of
    probes was delivered); the workers are left running."""
    watch = DeliveryWatch(settings, contract)
    await watch.start()
    others = OtherProcesses(stack)
    workers = others.workers
    try:
        others.begin()
        workers += [start_worker(settings, run_dir, name, state) for name, state in started]
        first = probes.round()
        await rt.produce_all(settings, PROVIDER_TOPIC, list(first.values()))
        delivered = await watch.delivered(first, workers)
        owned = {workers[0].client_id: set(first)}
        if len(workers) > 1:
            note(f"{title}: the first probes delivered; waiting for a stable group")
            owned = await until_stable(settings, workers)
            second = probes.round()
            await rt.produce_all(settings, PROVIDER_TOPIC, list(second.values()))
            delivered = await watch.delivered(second, workers)
        await asyncio.sleep(SETTLE_SECONDS)
        others.end()
        measured = []
        for worker in workers:
            held = owned[worker.client_id]
            ready = max(delivered[p] for p in held) - worker.started
            rss, hwm = worker.memory()
            measured.append(Readiness(title + (f", {worker.name}" if len(workers) > 1 else ""),
                                      enrolments, len(held), ready, rss, hwm, others.share,
                                      await worker.stores()))
            note(f"{measured[-1].title}: ready in {ready:.1f} s, RSS {rss:,.0f} MiB "
                 f"(peak {hwm:,.0f}), {len(held)} partitions")
    except BaseException:
        for worker in workers:
            rt.stop_worker(worker.process)
        raise
    finally:
        await watch.stop()
    return measured, workers


async def until_stable(settings: Settings, workers: Sequence[Worker]) -> dict[str, set[int]]:
    """The partitions each worker holds once the group is stable with them alone, each
    holding some."""
    wanted = {w.client_id for w in workers}
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        for worker in workers:
            worker.check_alive()
        try:
            state, owned = await group(settings)
        except KafkaError:
            state, owned = "Unknown", {}
        if state == "Stable" and set(owned) == wanted and all(owned.values()):
            return owned
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the group was not stable with both workers within {READY_TIMEOUT} s")


def stop_all(workers: Iterable[Worker]) -> None:
    for worker in workers:
        worker.process.terminate()
    for worker in workers:
        rt.stop_worker(worker.process)


@dataclass
class Memory:
    enrolments: int = 0
    enrol_seconds: float = 0.0
    rows: list[Readiness] = field(default_factory=list)


async def memory_part(settings: Settings, run_dir: Path, arguments: argparse.Namespace,
                      warm: dict[str, Any]) -> Memory:
    note("memory and readiness: wiping and warming the stack")
    stack = await restack(settings, run_dir, warm)
    (contract,) = rt.bench_contracts("m", 1, "enrolled")
    await write_contracts(settings, [contract], through_store=True)
    probes = Probes(settings, arguments.partitions, arguments.seed + 2)
    await enrol(settings, {contract.id: probes.refs})
    state = run_dir / "state"
    result = Memory(arguments.enrolments)

    async def measure(title: str, started: list[tuple[str, Path]], enrolled: int,
                      stop: bool = True) -> list[Worker]:
        note(f"{title}: starting")
        rows, workers = await ready_workers(settings, run_dir, stack, contract, probes,
                                            started, title, enrolled)
        result.rows += rows
        if stop:
            stop_all(workers)
        return workers

    await measure("one worker, no enrolments", [("memory-none", state / "none")], 0)
    note(f"drawing {arguments.enrolments:,} persons")
    refs = person_refs(settings, arguments.enrolments, arguments.seed + 3)
    note(f"enrolling {len(refs):,} persons through SubjectLedger.record_population")
    began = time.perf_counter()

    def progress(written: int) -> None:
        note(f"  {written:,} enrolments written in {time.perf_counter() - began:.0f} s")

    await enrol(settings, {contract.id: refs}, at_once=1, progress=progress)
    result.enrol_seconds = time.perf_counter() - began
    del refs
    await measure("one worker", [("memory-one", state / "one")], arguments.enrolments)
    await measure("the same worker restarted on its state folder",
                  [("memory-one-restarted", state / "one")], arguments.enrolments)
    await measure("two workers", [("memory-two-a", state / "two"),
                                  ("memory-two-b", state / "two")], arguments.enrolments)
    return result


# --- report -----------------------------------------------------------------------------------


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=False).stdout.strip()

    changed = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if changed
                                                  else "")


def report_settings(arguments: argparse.Namespace, warm: dict[str, Any]) -> None:
    print(f"commit {commit()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
          f"{arguments.partitions} partitions on every topic the bus creates")
    ups = warm["warm-up"]
    if ups:
        print(f"each part on a wiped stack whose broker's JIT had settled: {len(ups)} warm-up(s) "
              f"of {rt.spread(ups, '{:.0f}') or f'{ups[0]:.0f}'} s")


def report_routing(results: dict[Configuration, list[Routing]],
                   arguments: argparse.Namespace) -> None:
    markers = 2 * arguments.partitions
    print(f"\n## Routing with enrolled contracts\n\n{arguments.count:,} quotient_familial events "
          f"+ {markers} markers, one worker process, {arguments.repeat} round(s); contracts "
          f"written {'with ContractStore.apply' if arguments.store_apply else 'in bulk'}\n")
    print("| configuration | events/s (median) | range | audit records / event "
          "| deliveries / event | worker peak RSS (MiB) | worker warm-up (s) "
          "| worker CPU / event (ms) | broker CPU / event (ms) "
          "| contracts written (s) | enrolments written (s) | CPU stolen by the host "
          "| CPU of other processes |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
          "---:|---:|")
    for configuration in sorted(results, key=lambda c: (c.enrolled_in, c.population,
                                                       c.contracts)):
        runs = results[configuration]
        rates = [r.rate for r in runs if r.rate is not None]
        failures = "; ".join(r.failure for r in runs if r.failure)
        median = f"{statistics.median(rates):,.0f}" if rates else "n/a"
        print(f"| {configuration.title} | {median}{f' ({failures})' if failures else ''} | "
              f"{rt.spread(rates, '{:,.0f}')} | "
              f"{statistics.median(r.audit for r in runs):,.4f} | "
              f"{statistics.median(r.deliveries for r in runs):,.4f} | "
              f"{max(r.peak for r in runs):,.0f} | "
              f"{statistics.median(r.warm_up for r in runs):,.0f} | "
              f"{milliseconds(r.worker_cpu for r in runs)} | "
              f"{milliseconds(r.broker_cpu for r in runs)} | "
              f"{statistics.median(r.contracts_seconds for r in runs):,.1f} | "
              f"{statistics.median(r.enrol_seconds for r in runs):,.1f} | "
              f"{', '.join(rt.percent(r.steal) for r in runs)} | "
              f"{', '.join(rt.percent(r.others) for r in runs)} |")
    small, large, everyone, each = configurations(arguments.enrolled)[:4]
    print("\n| ratio, within each round | median | range | acceptance |\n|---|---:|---:|---|")
    for numerator, denominator in ((large, small), (each, everyone)):
        if numerator not in results or denominator not in results:
            continue
        ratios = [a.rate / b.rate for a, b in zip(results[numerator], results[denominator],
                                                  strict=True)
                  if a.rate is not None and b.rate is not None]
        median = f"{statistics.median(ratios):.3f}" if ratios else "n/a"
        print(f"| {numerator.title} ÷ {denominator.title} | {median} | "
              f"{rt.spread(ratios, '{:.3f}')} | at least 0.8 |")


def milliseconds(values: Iterable[float | None]) -> str:
    """The median of the values measured, or n/a."""
    known = [value for value in values if value is not None]
    return f"{statistics.median(known):.2f}" if known else "n/a"


def report_memory(result: Memory) -> None:
    rows = result.rows
    baseline = rows[0].rss
    single = next(r for r in rows if r.title == "one worker").rss - baseline
    print(f"\n## Memory and readiness with {result.enrolments:,} enrolments\n\n"
          f"{result.enrolments:,} enrolments in one `enrolled` contract written through "
          f"SubjectLedger.record_population in {result.enrol_seconds:,.1f} s "
          f"({result.enrolments / result.enrol_seconds:,.0f}/s); time to ready = from the "
          f"process's start until a probe on each of its partitions was delivered; memory "
          f"{SETTLE_SECONDS:.0f} s after ready; RSS growth = RSS − the RSS with no "
          f"enrolments; stores = what the worker reports its stores keep in memory "
          f"(circulation_state_memory_bytes)\n")
    stores = next(r for r in rows if r.title == "one worker").stores
    print("| worker | enrolments | partitions held | time to ready (s) | VmRSS (MiB) "
          "| VmHWM (MiB) | RSS growth (MiB) | ÷ one worker's | stores (MiB) | ÷ one worker's "
          "| CPU of other processes |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        state = row.rss - baseline
        ratio = f"{state / single:.2f}" if row.enrolments and single > 0 else ""
        held = "n/a" if row.stores is None else f"{row.stores:,.1f}"
        share = f"{row.stores / stores:.2f}" \
            if row.enrolments and row.stores is not None and stores else ""
        print(f"| {row.title} | {row.enrolments:,} | {row.partitions} | {row.ready:.1f} | "
              f"{row.rss:,.0f} | {row.hwm:,.0f} | {state:,.0f} | {ratio} | {held} | {share} | "
              f"{rt.percent(row.others)} |")
    print("\nacceptance: with two workers, each one's state at most 0.6 × one worker's; "
          "a restarted worker ready in under 30 s")


# --- main -------------------------------------------------------------------------------------


async def main(arguments: argparse.Namespace) -> None:
    configure(arguments.partitions)
    configure_logging(Settings(log_level="warning", log_format="console"))  # on stderr
    warm: dict[str, Any] = {"warm-up": []}
    routing: dict[Configuration, list[Routing]] | None = None
    with tempfile.TemporaryDirectory(prefix="directory-scale-") as folder:
        run_dir = Path(folder)
        settings = rt.private_settings(run_dir)
        try:
            if arguments.only in (None, "routing"):
                routing = await routing_part(settings, run_dir, arguments, warm)
                report_settings(arguments, warm)
                report_routing(routing, arguments)
                sys.stdout.flush()
            if arguments.only in (None, "memory"):
                result = await memory_part(settings, run_dir, arguments, warm)
                if routing is None:
                    report_settings(arguments, warm)
                report_memory(result)
        finally:
            for worker in STARTED:
                if worker.process.poll() is None:
                    worker.process.kill()
                    worker.process.wait()
            await asyncio.to_thread(rt.stack_of(run_dir).down)  # whatever still runs there


def sizes(text: str) -> list[int]:
    chosen = sorted({int(size) for size in text.split(",")})
    if len(chosen) < 2 or chosen[0] < IN:
        raise argparse.ArgumentTypeError(f"at least two sizes, each at least {IN}")
    return chosen


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000,
                        help="events routed in each routing measurement")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of the routing configurations (medians are reported)")
    parser.add_argument("--partitions", type=int, default=6,
                        help="partitions of every topic the bus creates")
    parser.add_argument("--enrolled", type=sizes, default=[3, 300, 3000],
                        help="numbers of enrolled contracts, comma-separated")
    parser.add_argument("--enrolments", type=int, default=1_000_000,
                        help="persons enrolled for the memory and readiness part")
    parser.add_argument("--only", choices=("routing", "memory"), default=None)
    parser.add_argument("--pair", choices=("nobody", "each"), default=None,
                        help="routing: only the pair following nobody (enrolled-3 and the "
                             "largest) or the pair with each person in 3 (all-3 and the "
                             "largest); both and the sizes between by default")
    parser.add_argument("--store-apply", action="store_true",
                        help="apply contracts with ContractStore.apply, as the command does, "
                             "rather than in bulk")
    parser.add_argument("--route-timeout", type=float, default=3600.0,
                        help="seconds a worker may take to route one backlog")
    parser.add_argument("--rss-limit", type=float, default=8192.0,
                        help="MiB of RSS above which a routing worker is killed (0: no limit)")
    asyncio.run(main(parser.parse_args()))
