"""Shared harness of the routing integration tests: real workers, contracts, subjects, readers.

Used as a pytest plugin (``pytest_plugins = ("tests.integration.routing_harness",)`` in each
routing test module), so that its session fixtures are shared by every module that asks.

- **Workers.** :func:`bus` starts two ``circulation worker`` processes (``python -m streams.cli
  worker``) for the whole session, each with a Faust client id of its own, waits until both are
  members of the ``circulation-router`` consumer group with partitions, then until the group has
  routed the backlog of the provider topics (other tests and other runs publish there, and a
  contract applied before the backlog is routed would be asked about every old event). Their
  logs go to files whose tails every timeout message shows. The group may hold workers of other
  sessions too: nothing here assumes the two are alone, they are recognised by client id.
- **Contracts** are made unique to the run (``rt-<name>-<run>``, subscribers alike), applied
  with :class:`~streams.state.contract_store.ContractStore`, and at the end of the session revoked
  and then removed from ``bus.contracts`` by a tombstone, so that later runs do not keep
  deciding (and auditing) every event for them.
- **Subjects** are fresh synthetic persons and companies drawn from seeds unique to the run.
- **Reading**: :class:`Reader` follows topics from given offsets and keeps the records a filter
  wants (``bus.audit`` is shared: tests filter it by their own subject references); a plain
  Confluent decoder (registry by id, fastavro) reads deliveries as a subscriber would.

Waiting is always for *expected records*, with generous timeouts, never for fixed delays: every
change of state is fenced on every provider partition (:mod:`streams.state.fences`), so anything
written before an event was published (contract, consent, enrolment) is in force when that
event is routed.

(PYTEST_DONT_REWRITE: the test modules import this module before registering it as a plugin;
its assertions carry their own messages.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaConnectionError
from aiokafka.protocol.group import MemberAssignment

from connectors.publisher import Publisher
from schemas.catalog import Catalog
from schemas.codec import from_json, to_json
from schemas.registration import value_subject
from schemas.registry import SchemaRegistry
from schemas.serde import AvroSerde
from streams.audit.trail import audit_ends, verify_since
from streams.dev.synthetic import Person, companies, generate, people
from streams.kafka import clients
from streams.kafka.admin import topic_partitions
from streams.kafka.partitioning import subject_partition
from streams.kafka.topics import AUDIT, CONTRACTS, DLQ
from streams.privacy.pseudonyms import Pseudonymiser, SubjectReferences
from streams.privacy.secret import pseudonym_secret, subject_secret
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.contract_store import Applied, ContractStore
from streams.worker.app import APP_ID
from tests.conftest import Services
from tests.integration.plain_consumer import PlainDecoder
from tests.integration.private_stack import private_settings, running_stack

RUN = uuid.uuid4().hex[:8]
"""Unique to this test session: contract ids, subscribers and seeds are derived from it."""
CATALOG = Catalog.load()
CLI = [sys.executable, "-m", "streams.cli"]
REPO = Path(__file__).resolve().parents[2]
WAIT = 90.0
"""Seconds to wait for records the workers must write (they may have a backlog to route)."""
READY_WAIT = 120.0
CATCH_UP_WAIT = 300.0
SIRET = "21690123100011"

Offsets = dict[TopicPartition, int]
Record = Any
"""An aiokafka ``ConsumerRecord`` (bytes key and value, headers as (str, bytes) pairs)."""

_seeds = itertools.count(int(RUN, 16) % 1_000_000 * 1000)


def today() -> date:
    """The day the workers use to decide whether a contract is in force (UTC)."""
    return datetime.now(UTC).date()


def fresh_seed() -> int:
    """A seed no other test of this session (nor, almost surely, of another run) uses."""
    return next(_seeds)


def fresh_people(n: int) -> list[Person]:
    return people(fresh_seed(), n)


def fresh_companies(n: int) -> list[str]:
    return companies(fresh_seed(), n)


def event_for(dataset: str, subject: Person | str) -> dict[str, Any]:
    """One published event of ``dataset`` about ``subject``, with a fresh id."""
    event = next(iter(generate(dataset, 1, fresh_seed(), subjects=[subject])))
    event["id"] = str(uuid.uuid4())
    return event


def header(record: Record, name: str) -> str | None:
    value = dict(record.headers).get(name)
    return None if value is None else bytes(value).decode()


# --- worker processes -----------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """One ``circulation worker`` subprocess and where its output goes."""

    client_id: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        kept = [ln for ln in text.splitlines() if '"batch routed"' not in ln]
        routed = sum('"batch routed"' in ln for ln in text.splitlines())
        return "\n".join([f"--- {self.client_id} (pid {self.process.pid}, exit "
                          f"{self.process.poll()}), {routed} batches routed; last lines:",
                          *kept[-lines:]])


class WorkerPool:
    """Two (or more) routing workers of the ``circulation-router`` group, started for a session."""

    def __init__(self, services: Services, folder: Path, count: int = 2,
                 environment: Mapping[str, str] | None = None) -> None:
        self.services = services
        self.folder = folder
        self.count = count
        self.environment = dict(environment or {})
        """Added to every worker's environment (a private stack's, Faust's timeouts)."""
        self.workers: list[WorkerProcess] = []
        """The workers started and not stopped by :meth:`terminate`."""
        self._numbers = itertools.count(1)

    def start(self) -> None:
        for _ in range(self.count):
            self.add()

    def add(self, extra_env: Mapping[str, str] | None = None) -> WorkerProcess:
        """Start one more worker (numbered after those started before it)."""
        number = next(self._numbers)
        client_id = f"routing-test-{RUN}-w{number}"
        workdir = self.folder / f"w{number}"  # Faust keeps its data folder in the cwd
        workdir.mkdir(parents=True, exist_ok=True)
        log = self.folder / f"worker-{number}.log"
        env = {
            **os.environ,
            "CIRCULATION_KAFKA_BOOTSTRAP": self.services.bootstrap,
            "CIRCULATION_SCHEMA_REGISTRY_URL": self.services.registry_url,
            "CIRCULATION_LOG_FORMAT": "json",
            "CIRCULATION_STATE_DIR": str(self.folder / "state"),  # one slot each
            "BROKER_CLIENT_ID": client_id,  # Faust's setting: tells the members apart
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                        os.environ.get("PYTHONPATH")])),
            **self.environment,
            **(extra_env or {}),
        }
        with log.open("wb") as out:
            process = subprocess.Popen([*CLI, "worker"], env=env, cwd=workdir,
                                       stdout=out, stderr=subprocess.STDOUT)
        worker = WorkerProcess(client_id, process, log)
        self.workers.append(worker)
        return worker

    @property
    def client_ids(self) -> list[str]:
        return [w.client_id for w in self.workers]

    def report(self) -> str:
        """The tail of every worker's log, for failure messages."""
        return "\n".join(w.tail() for w in self.workers)

    def check_alive(self) -> None:
        dead = [w for w in self.workers if w.process.poll() is not None]
        if dead:
            pytest.fail("a routing worker exited:\n" + self.report(), pytrace=False)

    def terminate(self, worker: WorkerProcess, timeout: float = 60) -> int:
        """Stop ``worker`` as a supervisor does (SIGTERM) and wait: its exit status. It is no
        longer one of :attr:`workers`."""
        self.workers.remove(worker)
        worker.process.send_signal(signal.SIGTERM)
        try:
            return worker.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait(timeout=10)
            pytest.fail(f"a worker still ran {timeout:.0f}s after SIGTERM\n{worker.tail()}",
                        pytrace=False)

    def kill(self, worker: WorkerProcess) -> int:
        """Crash ``worker`` (SIGKILL: nothing flushed, nothing committed); its exit status. It
        stays one of :attr:`workers` until :meth:`restart_exited` replaces it."""
        worker.process.kill()
        return worker.process.wait(timeout=30)

    def restart_exited(self) -> list[int]:
        """Do what a supervisor does: replace every worker that exited by a new one; the exit
        statuses of those replaced."""
        exited = [w for w in self.workers if w.process.poll() is not None]
        for worker in exited:
            self.workers.remove(worker)
            self.add()
        return [w.process.returncode for w in exited]

    def stop(self) -> None:
        """SIGTERM (Faust shuts down and commits), then SIGKILL whatever is still there."""
        for worker in self.workers:
            if worker.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(timeout=10)

    async def assignments(self, settings: Settings) -> dict[str, set[TopicPartition]]:
        """Partitions of every member of the group, by client id (other sessions' included)."""
        admin = AIOKafkaAdminClient(**clients.connection_options(settings))
        await admin.start()
        try:
            responses = await admin.describe_consumer_groups([APP_ID])
        finally:
            await admin.close()
        owned: dict[str, set[TopicPartition]] = {}
        for response in responses:
            for group in response.groups:
                for member in group[5]:
                    client_id, raw = member[1], member[4]
                    partitions = owned.setdefault(client_id, set())
                    if raw:
                        assignment = MemberAssignment.decode(raw)
                        partitions |= {TopicPartition(topic, p)
                                       for topic, numbers in assignment.assignment
                                       for p in numbers}
        return owned

    async def wait_ready(self, settings: Settings, timeout: float = READY_WAIT,
                         supervised: bool = False) -> list[int]:
        """Until each of our workers is a member of the group with partitions. A worker that
        exits fails the wait, unless ``supervised``: then it is restarted, as its supervisor
        would. The exit statuses of those restarted."""
        deadline = asyncio.get_running_loop().time() + timeout
        owned: dict[str, set[TopicPartition]] = {}
        restarted: list[int] = []
        while asyncio.get_running_loop().time() < deadline:
            if supervised:
                restarted += self.restart_exited()
            self.check_alive()
            try:
                owned = await self.assignments(settings)
            except (GroupCoordinatorNotAvailableError, KafkaConnectionError):
                pass  # a broker just started has no group coordinator yet: ask again
            else:
                if all(owned.get(client) for client in self.client_ids):
                    return restarted
            await asyncio.sleep(0.5)
        pytest.fail(f"workers not all assigned after {timeout:.0f}s: "
                    f"{ {c: len(p) for c, p in owned.items()} }\n{self.report()}", pytrace=False)

    async def wait_caught_up(self, settings: Settings, timeout: float = CATCH_UP_WAIT) -> None:
        """Until the group has committed, on every provider partition, the end offset of now."""
        topics = CATALOG.provider_topics()
        target = await end_offsets(settings, topics)
        deadline = asyncio.get_running_loop().time() + timeout
        lag = -1
        admin = AIOKafkaAdminClient(**clients.connection_options(settings))
        await admin.start()
        try:
            while asyncio.get_running_loop().time() < deadline:
                self.check_alive()
                committed = await admin.list_consumer_group_offsets(APP_ID)
                lag = sum(max(0, end - (committed[tp].offset if tp in committed else 0))
                          for tp, end in target.items())
                if lag == 0:
                    return
                await asyncio.sleep(1)
        finally:
            await admin.close()
        pytest.fail(f"the router group still lags {lag} events behind the provider topics "
                    f"after {timeout:.0f}s\n{self.report()}", pytrace=False)


# --- Kafka reading -----------------------------------------------------------------------


async def end_offsets(settings: Settings, topics: Iterable[str]) -> Offsets:
    """The end offset of every partition of ``topics`` (which must exist)."""
    partitions = await topic_partitions(settings, list(topics))
    consumer = AIOKafkaConsumer(**clients.connection_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)  # offsets of unassigned topics are asked one topic at a time
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def beginning(settings: Settings, topics: Iterable[str]) -> Offsets:
    """Offset 0 of every partition of ``topics``: read them whole."""
    return dict.fromkeys(await topic_partitions(settings, list(topics)), 0)


class Reader:
    """Follows partitions from given offsets and keeps the records ``keep`` accepts."""

    def __init__(self, settings: Settings, start: Offsets,
                 keep: Callable[[Record], bool] = lambda _: True) -> None:
        self.settings = settings
        self.start = dict(start)
        self.keep = keep
        self.records: list[Record] = []
        self._consumer = AIOKafkaConsumer(**clients.connection_options(settings),
                                          enable_auto_commit=False,
                                          max_partition_fetch_bytes=8 * 1024 * 1024,
                                          fetch_max_bytes=64 * 1024 * 1024)

    async def __aenter__(self) -> Reader:
        await self._consumer.start()
        self._consumer.assign(list(self.start))
        for tp, offset in self.start.items():
            self._consumer.seek(tp, offset)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_ms: int = 300) -> None:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=20_000)
        for batch in batches.values():
            self.records += [r for r in batch if self.keep(r)]

    async def until(self, done: Callable[[list[Record]], bool], what: str,
                    workers: WorkerPool | None = None, timeout: float = WAIT) -> list[Record]:
        """Poll until ``done(records)``; fail naming ``what`` (and the workers' logs)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not done(self.records):
            if asyncio.get_running_loop().time() > deadline:
                logs = workers.report() if workers else ""
                pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} "
                            f"({len(self.records)} records kept so far)\n{logs}", pytrace=False)
            if workers is not None:
                workers.check_alive()
            await self.poll()
        return self.records

    async def drain(self) -> list[Record]:
        """Read on to the end offsets of now (catch anything written after the awaited ones)."""
        ends = await self._consumer.end_offsets(list(self.start))
        while any([await self._consumer.position(tp) < end for tp, end in ends.items()]):
            await self.poll()
        return self.records


async def read_all(settings: Settings, start: Offsets,
                   keep: Callable[[Record], bool] = lambda _: True) -> list[Record]:
    """Every kept record from ``start`` to the end offsets of now."""
    async with Reader(settings, start, keep) as reader:
        return await reader.drain()


def published_json(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event's data as the bus holds it: every field, defaults filled in, JSON form."""
    schema = CATALOG.dataset(event["type"]).latest.parsed
    data: dict[str, Any] = to_json(schema, from_json(schema, event["data"]))
    return data


# --- contracts, subjects, publishing ---------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """A published event and where it landed."""

    event: dict[str, Any]
    topic: str
    partition: int
    offset: int
    subject_ref: str

    @property
    def id(self) -> str:
        return str(self.event["id"])


@dataclass
class Bus:
    """What a routing test needs: settings, running workers, and ways to act on the bus."""

    services: Services
    settings: Settings
    workers: WorkerPool
    publisher: Publisher
    registry: SchemaRegistry
    decoder: PlainDecoder
    cli_env: dict[str, str]
    applied: dict[str, Applied] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.serde = AvroSerde(self.registry)
        self.references = SubjectReferences(subject_secret(self.settings))
        self.pseudonyms = Pseudonymiser(pseudonym_secret(self.settings))

    # subjects

    def reference(self, subject: Person | str) -> str:
        """The subject reference of a person (or the SIREN of a company)."""
        if isinstance(subject, Person):
            return self.references.for_person(subject.nir)
        return self.references.for_company(subject)

    def pseudonym(self, contract: Contract, subject: Person | str) -> str:
        """What ``contract``'s subscriber must see as the subject."""
        return self.pseudonyms.pseudonym(contract.subscriber, self.reference(subject))

    def delivery_id(self, contract: Contract, sent: Sent) -> str:
        """The id ``contract``'s subscriber receives for ``sent`` (its own, keyed id)."""
        return self.pseudonyms.for_subscriber(contract.subscriber).event_id(
            str(sent.event["source"]), sent.id)

    def by_delivery_id(self, contract: Contract, sent: Iterable[Sent]) -> dict[str, Sent]:
        """The events of ``sent`` by the id ``contract``'s subscriber receives for each."""
        return {self.delivery_id(contract, s): s for s in sent}

    async def partition_count(self, dataset: str) -> int:
        """Partitions of the dataset's provider topic(s) (the publisher creates them alike)."""
        topics = {CATALOG.topic_for(p, dataset) for p in CATALOG.dataset(dataset).providers}
        counts = {len(await topic_partitions(self.settings, [t])) for t in topics}
        assert len(counts) == 1, f"{dataset}'s topics differ in partition count"
        return counts.pop()

    async def people_on_every_partition(self, dataset: str,
                                        per_partition: int = 1) -> list[Person]:
        """Fresh persons whose events of ``dataset`` land on every partition of its topic."""
        partitions = await self.partition_count(dataset)
        chosen: dict[int, list[Person]] = {p: [] for p in range(partitions)}
        while any(len(found) < per_partition for found in chosen.values()):
            for person in fresh_people(8 * partitions):
                found = chosen[subject_partition(self.reference(person), partitions)]
                if len(found) < per_partition:
                    found.append(person)
        return [person for found in chosen.values() for person in found]

    # contracts

    def contract(self, name: str, datasets: Mapping[str, Sequence[str]], *,
                 consent: str = "not_required", population: str = "all",
                 subscriber: str | None = None, retention: str = "P30D",
                 valid_from: date | None = None, valid_until: date | None = None,
                 ) -> Contract:
        """A contract unique to this run (not applied yet)."""
        document = {
            "id": f"rt-{name}-{RUN}",
            "subscriber": f"rt-{subscriber or name}-{RUN}",
            "subscriber_siret": SIRET,
            "purpose": f"Essai de routage « {name} » — tarification sociale",
            "legal_basis": f"RGPD art. 6.1.e ; CRPA art. L114-8 ; essai {RUN}",
            "datasets": {dataset: list(fields) for dataset, fields in datasets.items()},
            "consent": consent,
            "population": population,
            "retention": retention,
            "valid_from": (valid_from or today() - timedelta(days=30)).isoformat(),
            "valid_until": valid_until.isoformat() if valid_until else None,
        }
        return Contract.checked(document, CATALOG)

    async def apply(self, *contracts: Contract) -> None:
        """Record the contracts (delivery topic and schema first), as ``contracts apply``."""
        store = ContractStore(self.settings, self.registry, CATALOG)
        for done in await store.apply(list(contracts)):
            self.applied[done.contract.id] = done

    async def cleanup(self) -> None:
        """Revoke this run's contracts, then remove them from the register (tombstones).

        Written here rather than with ``ContractStore.revoke``, which logs: a session's last
        step must not depend on the process's logging still having an open stream.
        """
        if not self.applied:
            return
        recorded = await ContractStore(self.settings, self.registry, CATALOG).load()
        schema = CATALOG.bus_record("contract").latest
        now = datetime.now(UTC)
        producer = AIOKafkaProducer(**clients.connection_options(self.settings), acks="all")
        await producer.start()
        try:
            for contract_id in self.applied:
                current = recorded.get(contract_id)
                if current is not None and not current.revoked:
                    value = self.serde.encode_json(value_subject(CONTRACTS), schema,
                                                   current.revoke(now).to_record())
                    await producer.send(CONTRACTS, value, key=contract_id.encode())
            for contract_id in self.applied:
                await producer.send(CONTRACTS, None, key=contract_id.encode())
            await producer.flush()
        finally:
            await producer.stop()

    # publishing

    async def publish(self, events: Sequence[Mapping[str, Any]]) -> list[Sent]:
        """Publish (validated, pseudonymised) and wait until every event is written."""
        prepared = [self.publisher.prepare(dict(e)) for e in events]
        futures = [await self.publisher.send(p) for p in prepared]
        written = await asyncio.gather(*futures)
        return [Sent(dict(e), p.topic, meta.partition, meta.offset, p.key.decode())
                for e, p, meta in zip(events, prepared, written, strict=True)]

    async def run_cli(self, *args: str, timeout: float = 60,
                      env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
        """``circulation ARGS`` in a subprocess, with settings ``env`` on top of the
        session's: (exit code, stdout, stderr)."""
        process = await asyncio.create_subprocess_exec(
            *CLI, *args, env={**self.cli_env, **(env or {})}, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), timeout)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    # reading

    def audit_reader(self, start: Offsets, subjects: Iterable[str]) -> Reader:
        """Audit records about these subject references (or SIRENs), from ``start``."""
        keys = {s.encode() for s in subjects}
        return Reader(self.settings, start, lambda r: r.key in keys)

    def audit(self, record: Record) -> dict[str, Any]:
        _, datum = self.serde.decode(record.value)
        assert isinstance(datum, dict)
        return datum

    async def decisions(self, start: Offsets, sent: Sequence[Sent],
                        contracts: Sequence[Contract],
                        follows: Callable[[Sent, Contract], bool] | None = None,
                        ) -> dict[tuple[str, str], dict[str, Any]]:
        """The audit record of every (event id, contract id) pair, once all are written.

        ``follows`` says which contracts follow each event's person (all of them by default):
        only those decide, and an audit record of another pair fails the test. Duplicates (a
        batch replayed after a rebalance) must agree with each other.
        """
        naming = {(s.id, c.id): (s, c) for s in sent for c in contracts
                  if CATALOG.dataset(s.event["type"]).id in c.datasets}
        wanted = {pair for pair, (s, c) in naming.items() if follows is None or follows(s, c)}
        found: dict[tuple[str, str], dict[str, Any]] = {}
        read = 0

        def complete(records: list[Record]) -> bool:
            nonlocal read
            for record in records[read:]:
                audit = self.audit(record)
                pair = (audit["event_id"], audit["contract_id"])
                assert pair in wanted or pair not in naming, (
                    f"{pair} audited, but the contract does not follow the event's person: "
                    f"{audit['reason']}")
                if pair in wanted:
                    earlier = found.setdefault(pair, audit)
                    assert (earlier["decision"], earlier["reason"]) == (
                        audit["decision"], audit["reason"]), f"conflicting audit for {pair}"
            read = len(records)
            return wanted <= set(found)

        async with self.audit_reader(start, {s.subject_ref for s in sent}) as reader:
            await reader.until(complete, f"{len(wanted)} audit records", self.workers)
        return {pair: audit for pair, audit in found.items() if pair in wanted}

    async def delivered(self, contract: Contract, expected: int, *,
                        event_type: str | None = None,
                        start: Offsets | None = None) -> list[Record]:
        """Every record on the contract's delivery topic (deliveries and erasure notices) once
        ``expected`` of them are there (of ``event_type``, when given), read on to the end."""
        start = start if start is not None else await beginning(self.settings,
                                                                [contract.delivery_topic])

        def enough(records: list[Record]) -> bool:
            matching = [r for r in records
                        if event_type is None or header(r, "ce_type") == event_type]
            return len(matching) >= expected

        async with Reader(self.settings, start) as reader:
            await reader.until(enough, f"{expected} records on {contract.delivery_topic}",
                               self.workers)
            return await reader.drain()


async def dlq_start(settings: Settings) -> Offsets:
    return await end_offsets(settings, [DLQ])


async def audit_start(settings: Settings) -> Offsets:
    return await end_offsets(settings, [AUDIT])


_DAY = re.compile(r"(\d{4}-\d{2}-\d{2})T00:00:00Z")


def parse_day(text: str) -> date:
    """A day as the bus writes ``ce_time`` and ``ce_expiresat``: midnight UTC, nothing finer."""
    found = _DAY.fullmatch(text)
    assert found, f"not an RFC 3339 instant at midnight UTC: {text!r}"
    return date.fromisoformat(found.group(1))


# --- a private bus under a stream of events ------------------------------------------------


@dataclass
class PrivateBus:
    """A private stack's bus with workers of its own, contracts on one dataset, and persons
    whose events land on every partition of its topic: for tests that rebalance, crash or stop
    what the session's stack serves."""

    bus: Bus
    env: dict[str, str]
    dataset: str
    contracts: list[Contract]
    persons: list[Person]
    audit_start: dict[int, int]

    @property
    def workers(self) -> WorkerPool:
        return self.bus.workers

    async def add_worker(self) -> None:
        """Start one more worker and wait until every running worker owns partitions."""
        self.workers.add()
        await self.workers.wait_ready(self.bus.settings)

    async def delivery_start(self, *others: Contract) -> Offsets:
        """Where the delivery topics of the contracts (and of ``others``) end now."""
        return await end_offsets(self.bus.settings,
                                 [c.delivery_topic for c in (*self.contracts, *others)])

    async def deliveries(self, contract: Contract, start: Offsets,
                         sent: Sequence[Sent]) -> dict[str, list[Record]]:
        """The records on ``contract``'s delivery topic from ``start`` by ``ce_id``, once every
        id its subscriber must receive for ``sent`` is there (read on to the end)."""
        expected = set(self.bus.by_delivery_id(contract, sent))

        def every_one(records: list[Record]) -> bool:
            return expected <= {header(r, "ce_id") for r in records}

        mine = {tp: offset for tp, offset in start.items()
                if tp.topic == contract.delivery_topic}
        assert mine, f"no start offsets given for {contract.delivery_topic}"
        async with Reader(self.bus.settings, mine) as reader:
            await reader.until(every_one, f"{len(expected)} deliveries on "
                               f"{contract.delivery_topic}", self.workers)
            records = await reader.drain()
        by_id: dict[str, list[Record]] = {}
        for record in records:
            by_id.setdefault(str(header(record, "ce_id")), []).append(record)
        return by_id

    async def audited(self, sent: Sequence[Sent]) -> Counter[tuple[str, str]]:
        """How many audit records each (event id, contract id) pair of ``sent`` has."""
        ids = {s.id for s in sent}
        records = await read_all(self.bus.settings, await beginning(self.bus.settings, [AUDIT]))
        pairs = ((audit["event_id"], audit["contract_id"])
                 for audit in (self.bus.audit(r) for r in records))
        return Counter(pair for pair in pairs if pair[0] in ids)

    async def assert_chains_linked(self) -> None:
        """Every audit chain links over what this bus's workers wrote: one writer per chain."""
        trail = await verify_since(self.bus.settings, self.audit_start)
        assert not trail.breaks, f"audit chains broken at {trail.breaks[:5]}"

    async def reconcile(self) -> dict[str, Any]:
        """``circulation reconcile --json`` on the private stack, once the group caught up:
        it must exit 0 with no gap."""
        await self.workers.wait_caught_up(self.bus.settings)
        code, out, err = await self.bus.run_cli("reconcile", "--since", "2h", "--json",
                                                timeout=180)
        found: dict[str, Any] = json.loads(out) if out else {}
        assert (code, found.get("gaps"), found.get("clean")) == (0, [], True), (
            f"reconcile exited {code}: {out[-3000:]}{err[-3000:]}")
        return found


@contextlib.asynccontextmanager
async def private_bus(factory: pytest.TempPathFactory, name: str, dataset: str,
                      contracts: Sequence[str], fields: Sequence[str],
                      worker_environment: Mapping[str, str] | None = None,
                      ) -> AsyncIterator[PrivateBus]:
    """A :class:`PrivateBus` named ``name``: a private stack, contracts ``contracts`` on
    ``fields`` of ``dataset`` (without consent, everybody), 20 persons per partition; no worker
    yet (``worker_environment`` is added to each one's)."""
    with running_stack(factory.mktemp(f"{name}-stack")) as env:
        settings = private_settings(env)
        services = Services(settings.kafka_bootstrap, settings.schema_registry_url)
        workers = WorkerPool(services, factory.mktemp(f"{name}-workers"), count=0,
                             environment={**env, **(worker_environment or {})})
        registry = SchemaRegistry(services.registry_url)
        decoder = PlainDecoder(services.registry_url)
        try:
            async with Publisher(settings, registry=registry) as publisher:
                bus = Bus(services, settings, workers, publisher, registry, decoder, env)
                applied = [bus.contract(c, {dataset: list(fields)}) for c in contracts]
                await bus.apply(*applied)
                persons = await bus.people_on_every_partition(dataset, per_partition=20)
                yield PrivateBus(bus, env, dataset, applied, persons, await audit_ends(settings))
        finally:
            workers.stop()
            decoder.close()
            registry.close()


@dataclass
class Stream:
    """Publishes events of ``dataset`` about ``persons`` until stopped, and keeps what it
    sent (each once written)."""

    bus: Bus
    dataset: str
    persons: Sequence[Person]
    sent: list[Sent] = field(default_factory=list)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)
    _grown: asyncio.Event = field(default_factory=asyncio.Event)

    def events(self, count: int, persons: Sequence[Person] | None = None,
               ) -> list[dict[str, Any]]:
        drawn = list(generate(self.dataset, count, fresh_seed(),
                              subjects=list(persons or self.persons)))
        for event in drawn:
            event["id"] = str(uuid.uuid4())
        return drawn

    async def publish(self, count: int, persons: Sequence[Person] | None = None) -> list[Sent]:
        sent = await self.bus.publish(self.events(count, persons))
        self.sent += sent
        self._grown.set()
        return sent

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
async def steady_stream(private: PrivateBus, rate: int) -> AsyncIterator[Stream]:
    """A :class:`Stream` publishing ``rate`` events a second while the block runs (a failed
    publish fails the block)."""
    stream = Stream(private.bus, private.dataset, private.persons)
    task = asyncio.ensure_future(stream.steady(rate))
    try:
        yield stream
    finally:
        stream.stop()
        await task


# --- fixtures -------------------------------------------------------------------------------

CHECKPOINT_OFTEN = {"CIRCULATION_AUDIT_CHECKPOINT_SECONDS": "1"}
"""The session's workers sign their chains' heads at the first batch settled a second after the
last checkpoint: every routing test then writes checkpoints, which the session's closing checks
hold against the trail."""


@pytest.fixture(scope="session")
async def bus(services: Services, tmp_path_factory: pytest.TempPathFactory,
              ) -> AsyncIterator[Bus]:
    """Two routing workers for the whole session, caught up with the provider topics."""
    settings = services.settings()
    workers = WorkerPool(services, tmp_path_factory.mktemp("routing-workers"),
                         environment=CHECKPOINT_OFTEN)
    workers.start()
    registry = SchemaRegistry(services.registry_url)
    decoder = PlainDecoder(services.registry_url)
    cli_env = {**os.environ, "CIRCULATION_KAFKA_BOOTSTRAP": services.bootstrap,
               "CIRCULATION_SCHEMA_REGISTRY_URL": services.registry_url, "COLUMNS": "200"}
    try:
        await workers.wait_ready(settings)
        await workers.wait_caught_up(settings)
        async with Publisher(settings, CATALOG, registry) as publisher:
            state = Bus(services, settings, workers, publisher, registry, decoder, cli_env)
            try:
                yield state
            finally:
                await state.cleanup()
    finally:
        workers.stop()
        decoder.close()
        registry.close()
