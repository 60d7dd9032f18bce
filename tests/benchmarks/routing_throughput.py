"""Routing throughput and latency, against a raw Kafka pass-through ceiling, in one run.

Everything runs on a private local stack (other ports, a temporary run folder, the jar cache
shared) that is wiped between measurements, so contracts and backlogs of other work never
inflate the fan-out.

1. **R, the ceiling**: N records (the same bytes as published ``quotient_familial`` events) are
   preloaded on a 3-partition topic; one aiokafka consumer (``getmany``) and one producer
   (linger and batch size tuned) copy them to another topic. R = N / copy time.
2. **Routed throughput at fan-out 1, 3 and 10**: that many ``population: all``,
   ``consent: not_required`` contracts on ``quotient_familial``; N events preloaded on the
   provider topic; one ``circulation worker`` process routes them. Throughput = N / (time from
   the first to the last record the worker wrote, broker timestamps). Every event gives one
   delivery and one audit record per contract.
3. **End-to-end latency** at fan-out 3 at a steady rate of half the routed maximum (or
   ``--latency-rate``, which skips 1 and 2): events, validated and encoded beforehand, are
   stamped with the time and published at that rate for ``--latency-seconds`` while a consumer
   reads one delivery topic; latency = time read − the event's ``time`` (publish time), p50 and
   p99. The same load runs first until the broker's compiler is quiet again
   (:func:`_warm_routing`): at least 10 s, at most 120 s.

Before each measurement the stack is wiped and restarted, then loaded on scratch topics until
the broker's JIT compiler is quiet (:func:`warm_broker`): the figures are the steady state of a
broker, as in production, not its first minute.

Run: ``.venv/bin/python tests/benchmarks/routing_throughput.py [--count 30000] [--repeat 3]``.
Prints a markdown table. On a machine whose speed drifts, ``--repeat N`` measures R and the three
fan-outs N times, interleaved, and reports medians and ranges; each ratio is taken within its
round, where R and the routed rate met the same machine. It needs Java and Maven like
``circulation local up`` (the jars come from the cache). ``--secure`` runs it all on the secure
stack (SASL_SSL, ACLs, the registry behind its identity server), the harness as ``bus-admin``
and the worker as ``bus-worker``: the cost of authentication and encryption, R included.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import SecretStr

from connectors.publisher import OutgoingEvent, Publisher
from schemas.catalog import Catalog
from schemas.codec import rfc3339_millis
from streams.dev.localstack import LocalStack
from streams.dev.settings import LocalStackSettings
from streams.dev.synthetic import generate
from streams.kafka import clients
from streams.kafka.admin import ensure_topics
from streams.kafka.topics import TopicSpec
from streams.privacy.pseudonyms import Pseudonymiser
from streams.privacy.secret import pseudonym_secret
from streams.settings import Settings
from streams.state.contract import Contract, PopulationMode
from streams.state.contract_store import ContractStore

CLI = [sys.executable, "-m", "streams.cli"]
FAN_OUTS = (1, 3, 10)
WARM_UP_SECONDS = 10.0
"""The least time the latency load runs before latencies count: the first topic, schema and
batch of the worker."""
WARM_MIN_SECONDS = 20.0
WARM_MAX_SECONDS = 120.0
WARM_WINDOW_SECONDS = 5.0
WARM_QUIET_SHARE = 0.05
"""The broker's JIT counts as settled once its compiler threads used less than this share of
one core over a window (see :func:`warm_broker`)."""
CONTRACT = (Path(__file__).resolve().parents[2] / "deploy" / "contracts"
            / "lyon-cantine-2026.yaml")


PRIVATE_STACK = LocalStackSettings(local_kafka_port=29092, local_controller_port=29093,
                                   local_registry_port=28081, local_identity_port=28180)
"""The private stack's ports; its run folder is given per run."""
SECURE = False
"""Whether the run is on the secure stack (``--secure``): SASL_SSL and ACLs, the registry behind
its identity server, the harness as ``bus-admin`` and the worker as ``bus-worker``."""


def private_stack(run_dir: Path) -> LocalStackSettings:
    """A private stack on ports of its own, in ``run_dir``."""
    return PRIVATE_STACK.model_copy(update={"local_data_dir": run_dir})


def stack_of(run_dir: Path) -> LocalStack:
    return LocalStack(private_stack(run_dir), secure=SECURE)


def private_settings(run_dir: Path) -> Settings:
    """The bus's settings pointed at the private stack; on the secure one, its operator's,
    holding both secrets (the harness publishes and reads deliveries' ids)."""
    if not SECURE:
        return private_stack(run_dir).bus_settings()
    stack = stack_of(run_dir)
    return stack.admin_settings().model_copy(update={
        "subject_secret_file": stack.security.secret_file("subject"),
        "pseudonym_secret_file": stack.security.secret_file("pseudonym")})


def env_of(settings: Settings) -> dict[str, str]:
    """A process environment giving ``settings`` (the connection, credentials and secrets)."""
    environment = {**os.environ, "CIRCULATION_LOG_LEVEL": "warning"}
    for name, value in settings:
        if name in ENVIRONMENT_FIELDS and value is not None:
            secret = getattr(value, "get_secret_value", None)
            environment[f"CIRCULATION_{name.upper()}"] = str(secret() if secret else value)
    return environment


ENVIRONMENT_FIELDS = {
    "kafka_bootstrap", "schema_registry_url", "security_protocol", "sasl_mechanism",
    "sasl_username", "sasl_password", "ssl_cafile", "schema_registry_username",
    "schema_registry_password", "subject_secret_file", "pseudonym_secret_file"}


def worker_env(settings: Settings) -> dict[str, str]:
    """The routing worker's environment: on the secure stack as ``bus-worker``, holding the
    pseudonym secret alone, as it runs in production."""
    if not SECURE:
        return env_of(settings)
    assert settings.ssl_cafile is not None
    folder = settings.ssl_cafile.parents[1]  # <run folder>/secure, beside tls/
    password = SecretStr((folder / "passwords" / "bus-worker").read_text().strip())
    return env_of(settings.model_copy(update={
        "sasl_username": "bus-worker", "sasl_password": password,
        "schema_registry_username": "bus-worker", "schema_registry_password": password,
        "subject_secret_file": None}))


def prepared_events(settings: Settings, count: int, seed: int) -> list[OutgoingEvent]:
    publisher = Publisher(settings)
    return [publisher.prepare(e) for e in generate("quotient_familial", count, seed,
                                                   provider="cnaf")]


async def produce_all(settings: Settings, topic: str, events: list[OutgoingEvent]) -> None:
    producer = AIOKafkaProducer(**clients.connection_options(settings), linger_ms=20,
                                max_batch_size=1 << 20, acks=1)
    await producer.start()
    try:
        for event in events:
            await producer.send(topic, event.value, key=event.key, headers=event.headers)
        await producer.flush()
    finally:
        await producer.stop()


async def ceiling(settings: Settings, events: list[OutgoingEvent]) -> float:
    """R: records per second copied by a tuned raw aiokafka consume-and-produce loop."""
    source, sink = f"bench.raw.{uuid.uuid4().hex[:8]}", f"bench.sink.{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, [TopicSpec(source, 3, 1), TopicSpec(sink, 3, 1)])
    await produce_all(settings, source, events)
    consumer = AIOKafkaConsumer(source, **clients.connection_options(settings),
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=8 << 20, fetch_max_bytes=32 << 20)
    producer = AIOKafkaProducer(**clients.connection_options(settings), linger_ms=5,
                                max_batch_size=1 << 20, acks=1)
    await consumer.start()
    await producer.start()
    copied, started = 0, 0.0
    try:
        while copied < len(events):
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if batches and not started:
                started = time.perf_counter()
            for records in batches.values():
                for record in records:
                    await producer.send(sink, record.value, key=record.key,
                                        headers=list(record.headers))
                copied += sum(1 for _ in records)
        await producer.flush()
        return len(events) / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()


def bench_contracts(label: str, count: int, population: PopulationMode = "all",
                    ) -> list[Contract]:
    """``count`` contracts ``bench-<label>-<i>`` on ``quotient_familial`` (the Lyon canteen's
    terms), each its own subscriber, consent not required, following everyone or only the
    persons enrolled in them."""
    catalog = Catalog.load()
    base = yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))
    return [Contract.checked({**base, "id": f"bench-{label}-{i}",
                              "subscriber": f"bench-subscriber-{i}",
                              "population": population, "consent": "not_required"}, catalog)
            for i in range(count)]


async def apply_contracts(settings: Settings, fan_out: int) -> list[Contract]:
    contracts = bench_contracts(str(fan_out), fan_out)
    with clients.schema_registry(settings) as registry:
        await ContractStore(settings, registry, Catalog.load()).apply(contracts)
    return contracts


async def written_span(settings: Settings, topics: list[str], expected: int,
                       timeout: float) -> tuple[float, float]:
    """(first, last) broker timestamps once ``expected`` records are on ``topics``."""
    consumer = AIOKafkaConsumer(*topics, **clients.connection_options(settings),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    first, last, seen = float("inf"), 0.0, 0
    deadline = time.monotonic() + timeout
    try:
        while seen < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=20_000)).values():
                for record in records:
                    first = min(first, record.timestamp / 1000)
                    last = max(last, record.timestamp / 1000)
                seen += len(records)
    finally:
        await consumer.stop()
    if seen < expected:
        raise RuntimeError(f"only {seen} of {expected} records written within {timeout:.0f}s")
    return first, last


def start_worker(settings: Settings, log: Path, environment: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """A ``circulation worker`` process, its output into ``log``; ``environment`` adds to or
    overrides the variables :func:`worker_env` gives it, ``cwd`` is where it runs (Faust
    keeps its data folder there)."""
    return subprocess.Popen([*CLI, "worker"], env={**worker_env(settings), **(environment or {})},
                            cwd=cwd, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()


async def routed(settings: Settings, events: list[OutgoingEvent], fan_out: int,
                 log: Path) -> float:
    """Input events per second routed by one worker at this fan-out."""
    contracts = await apply_contracts(settings, fan_out)
    await produce_all(settings, "provider.cnaf.quotient_familial", events)
    worker = start_worker(settings, log)
    try:
        topics = [c.delivery_topic for c in contracts]
        first, last = await written_span(settings, topics, len(events) * fan_out, 600)
    finally:
        stop_worker(worker)
    return len(events) / (last - first)


async def latency(settings: Settings, rate: float, seconds: float, seed: int, log: Path,
                  compiler: CompilerThreads) -> tuple[list[float], float]:
    """Publish → delivery latencies (ms) at ``rate`` events/s, fan-out 3, and the seconds the
    same load ran first, until the broker's compiler was quiet (:func:`_warm_routing`)."""
    contracts = await apply_contracts(settings, 3)
    worker = start_worker(settings, log)
    consumer = AIOKafkaConsumer(contracts[0].delivery_topic, **clients.connection_options(settings),
                                auto_offset_reset="latest", enable_auto_commit=False)
    await consumer.start()
    samples: list[float] = []
    sent_at: dict[str, datetime] = {}
    try:
        await asyncio.sleep(15)  # the worker joins its group and reads the state topics
        async with Publisher(settings) as publisher:
            # Validated and encoded before the clock starts, stamped with their publish time as
            # they are sent: the load generator shares the machine's two cores with the broker
            # and the worker, and should take as little of them as it can.
            def prepared(count: int, seed: int) -> list[OutgoingEvent]:
                return [publisher.prepare(event) for event in
                        generate("quotient_familial", count, seed, provider="cnaf")]

            warm_pool = prepared(int(rate * WARM_WINDOW_SECONDS), seed + 1)
            measured = prepared(int(rate * seconds), seed)
            # A subscriber gets its own id for each event: the reader finds the provider's by it.
            own_ids = Pseudonymiser(pseudonym_secret(settings)).for_subscriber(
                contracts[0].subscriber)
            provider_ids = {own_ids.event_id("cnaf", e.event_id): e.event_id for e in measured}
            reader = asyncio.create_task(_read_latencies(consumer, samples, provider_ids,
                                                         sent_at))
            warmed = await _warm_routing(publisher, warm_pool, rate, compiler)
            await _publish_at(publisher, measured, rate, sent_at)
            await publisher.flush()
            await asyncio.sleep(3)
            reader.cancel()
    finally:
        await consumer.stop()
        stop_worker(worker)
    return samples, warmed


async def _warm_routing(publisher: Publisher, pool: list[OutgoingEvent], rate: float,
                        compiler: CompilerThreads) -> float:
    """Publish ``pool`` over and over at ``rate`` until the broker's compiler is quiet; the
    seconds that took.

    :func:`warm_broker` settles the broker's JIT on scratch topics, but routing takes other
    paths of it (fetches over every provider and state topic, produce requests to several
    topics at once): measured during a first latency run after it, the compiler threads still
    took 30 to 50 % of a core for 20 s, and the latency's p99 was 400 to 1,000 ms in those
    seconds against 120 to 290 ms after. So the measured load itself runs first, at least
    :data:`WARM_UP_SECONDS` (the worker's first topic, schema and batch costs too), then until
    the compiler is quiet as in :func:`warm_broker`. The pool's events are sent again each
    window: replayed event ids are routed like any other.
    """
    return await until_quiet(compiler, lambda: _publish_at(publisher, pool, rate),
                             WARM_UP_SECONDS)


async def _publish_at(publisher: Publisher, events: list[OutgoingEvent], rate: float,
                      sent_at: dict[str, datetime] | None = None) -> None:
    """Send ``events`` at ``rate`` a second, each stamped with the moment it is sent (and that
    moment noted in ``sent_at`` by event id: a delivery carries only the event's day)."""
    began = time.perf_counter()
    for index, outgoing in enumerate(events):
        now = datetime.now(UTC)
        if sent_at is not None:
            sent_at[outgoing.event_id] = now
        await publisher.send(stamped(outgoing, now))
        await asyncio.sleep(max(0.0, began + (index + 1) / rate - time.perf_counter()))


def stamped(outgoing: OutgoingEvent, now: datetime) -> OutgoingEvent:
    """``outgoing`` with its CloudEvents ``time`` set to ``now``, the moment it is published."""
    headers = [(name, rfc3339_millis(now).encode() if name == "ce_time" else value)
               for name, value in outgoing.headers]
    return dataclasses.replace(outgoing, headers=headers)


async def _read_latencies(consumer: AIOKafkaConsumer, samples: list[float],
                          provider_ids: dict[str, str], sent_at: dict[str, datetime]) -> None:
    """Latencies of the measured events as their deliveries are read (warm-up ones ignored)."""
    while True:
        for records in (await consumer.getmany(timeout_ms=100)).values():
            now = datetime.now(UTC)
            for record in records:
                provider_id = provider_ids.get(dict(record.headers)["ce_id"].decode())
                sent = sent_at.get(provider_id) if provider_id is not None else None
                if sent is not None:
                    samples.append((now - sent).total_seconds() * 1000)


class StolenTime:
    """The share of the machine's CPU time that went to other guests of the host during a
    measurement (``steal`` in /proc/stat). On a shared virtual machine it is one way to tell a
    slow run from a slow program; only one: on the development machine R also halved between
    rounds with nothing stolen. ``share`` stays None where /proc/stat does not exist."""

    share: float | None = None

    def __enter__(self) -> StolenTime:
        self._before = cpu_times()
        return self

    def __exit__(self, *_: object) -> None:
        after = cpu_times()
        if self._before and after:
            spent = [a - b for a, b in zip(after, self._before, strict=True)]
            self.share = spent[7] / sum(spent) if sum(spent) else 0.0


def cpu_times() -> list[int] | None:
    """user, nice, system, idle, iowait, irq, softirq, steal (clock ticks, all CPUs)."""
    try:
        first = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0]
    except OSError:
        return None
    return [int(value) for value in first.split()[1:9]]


def fresh_stack(settings: Settings, run_dir: Path) -> LocalStack:
    stack = stack_of(run_dir)
    stack.up(fresh=True)
    if SECURE:
        asyncio.run(stack.provision())  # topics, schemas and ACLs, as `local up --secure`
    else:
        subprocess.run([*CLI, "schemas", "register"], env=env_of(settings), check=True,
                       capture_output=True)
    return stack


class CompilerThreads:
    """CPU time of a JVM's JIT compiler threads (``C1/C2 CompilerThread`` in /proc).

    A freshly started broker compiles its hot paths for a minute or so under load: on the
    development machine its compiler threads took 30 to 40 % of a core in the first 30 s of a
    steady publish at 1,100 events/s, then nothing, the broker itself dropping from about 60 % to
    15 %. Measured during that minute, the worker shares the two cores with a compiler that
    production never sees.
    """

    def __init__(self, pid: int | None) -> None:
        self.tasks = Path(f"/proc/{pid}/task") if pid is not None else None

    def seconds(self) -> float | None:
        """CPU seconds the compiler threads used so far; None where /proc does not tell."""
        if self.tasks is None or not self.tasks.is_dir():
            return None
        ticks = 0
        for task in self.tasks.iterdir():
            try:
                stat = (task / "stat").read_text(encoding="ascii")
            except OSError:  # a thread that ended meanwhile
                continue
            name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat.rsplit(")", 1)[1]
            if "CompilerThre" in name:
                ticks += sum(int(value) for value in fields.split()[11:13])
        return ticks / os.sysconf("SC_CLK_TCK")


async def warm_broker(settings: Settings, stack: LocalStack) -> float:
    """Load a fresh broker until its JIT compiler is quiet; the seconds that took.

    The load is what routing asks of the broker, on scratch topics: small idempotent ``acks=all``
    batches (providers publishing), fetches and offset commits by a consumer group, and
    ``ListOffsets`` (the worker's state barrier, at start and after a rebalance). It runs at
    least :data:`WARM_MIN_SECONDS`, then until the compiler threads used under
    :data:`WARM_QUIET_SHARE` of a core over a :data:`WARM_WINDOW_SECONDS` window, or
    :data:`WARM_MAX_SECONDS` in all.
    """
    compiler = CompilerThreads(stack.component_process("kafka").pid())
    topic = f"bench.warm.{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, [TopicSpec(topic, 3, 1)])
    done = asyncio.Event()
    load = asyncio.create_task(_warm_load(settings, topic, done))

    async def window() -> None:
        await asyncio.sleep(WARM_WINDOW_SECONDS)
        if load.done():  # the load failed: say why rather than wait for nothing
            await load

    try:
        return await until_quiet(compiler, window, WARM_MIN_SECONDS)
    finally:
        done.set()  # not cancelled: a commit cut short makes the client log a dead coordinator
        await load


async def until_quiet(compiler: CompilerThreads, window: Callable[[], Awaitable[None]],
                      least: float) -> float:
    """Run ``window`` (a load of about :data:`WARM_WINDOW_SECONDS`) again and again, at least
    ``least`` seconds, then until the compiler threads used under :data:`WARM_QUIET_SHARE` of a
    core over one window, or :data:`WARM_MAX_SECONDS` in all; the seconds that took."""
    began = time.perf_counter()
    while True:
        before = compiler.seconds()
        await window()
        after, elapsed = compiler.seconds(), time.perf_counter() - began
        quiet = (before is not None and after is not None
                 and after - before < WARM_QUIET_SHARE * WARM_WINDOW_SECONDS)
        if elapsed >= WARM_MAX_SECONDS or (elapsed >= least and quiet):
            return elapsed


async def _warm_load(settings: Settings, topic: str, done: asyncio.Event) -> None:
    options = clients.connection_options(settings)
    producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=True, linger_ms=5)
    consumer = AIOKafkaConsumer(topic, **options, group_id=f"bench-warm-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await producer.start()
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        value = b"x" * 300
        while not done.is_set():
            for index in range(20):  # about 2,000 records/s in small batches
                await producer.send(topic, value, key=f"{index:08x}".encode())
            await consumer.getmany(timeout_ms=10)
            await consumer.commit()
            await consumer.end_offsets(partitions)
            await asyncio.sleep(0.01)
    finally:
        await consumer.stop()
        await producer.stop()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main(count: int, seed: int, latency_seconds: float,
               latency_rate: float | None = None, repeat: int = 1) -> dict[Any, Any]:
    results: dict[Any, Any] = {"warm-up": []}
    with tempfile.TemporaryDirectory() as run_dir:
        settings = private_settings(Path(run_dir))
        stack = await warm_stack(settings, results, Path(run_dir))
        try:
            if latency_rate is not None:
                await measure_latency(results, settings, stack, latency_rate, latency_seconds,
                                      seed, Path(run_dir))
                return results
            events = prepared_events(settings, count, seed)
            for measurement in ("R", *FAN_OUTS):
                results[measurement] = []
                results[("steal", measurement)] = []
            for _ in range(repeat):  # rounds interleaved, so that the machine's drift is shared
                with StolenTime() as stolen:
                    results["R"].append(await ceiling(settings, events))
                results[("steal", "R")].append(stolen.share)
                for fan_out in FAN_OUTS:
                    await asyncio.to_thread(stack.down)
                    stack = await warm_stack(settings, results, Path(run_dir))
                    with StolenTime() as stolen:
                        results[fan_out].append(await routed(
                            settings, events, fan_out, Path(run_dir) / f"worker-{fan_out}.log"))
                    results[("steal", fan_out)].append(stolen.share)
                await asyncio.to_thread(stack.down)
                stack = await warm_stack(settings, results, Path(run_dir))
            await measure_latency(results, settings, stack, statistics.median(results[3]) / 2,
                                  latency_seconds, seed, Path(run_dir))
        finally:
            await asyncio.to_thread(stack.down)
    return results


async def warm_stack(settings: Settings, results: dict[Any, Any], run_dir: Path) -> LocalStack:
    """A wiped stack whose broker's JIT has settled (the time it took goes into ``results``)."""
    # The stack's own calls run their event loops: keep them off this one.
    stack = await asyncio.to_thread(fresh_stack, settings, run_dir)
    results["warm-up"].append(await warm_broker(settings, stack))
    return stack


async def measure_latency(results: dict[Any, Any], settings: Settings, stack: LocalStack,
                          rate: float, seconds: float, seed: int, run_dir: Path) -> None:
    """The latency run at ``rate``, with the CPU time stolen meanwhile, into ``results``."""
    compiler = CompilerThreads(stack.component_process("kafka").pid())
    with StolenTime() as stolen:
        results["latency"], results["routing warm-up"] = await latency(
            settings, rate, seconds, seed + 1, run_dir / "worker-latency.log", compiler)
    results["rate"] = rate
    results["latency steal"] = stolen.share


def report(results: dict[Any, Any], count: int) -> None:
    warm = results["warm-up"]
    print(f"each measurement on a wiped stack whose broker's JIT had settled: "
          f"{len(warm)} warm-up(s) of {spread(warm, '{:.0f}') or f'{warm[0]:.0f}'} s")
    if "R" in results:
        report_throughput(results, count)
    samples = results["latency"]
    if samples:
        print(f"\nlatency publish → delivery at {results['rate']:,.0f} events/s (fan-out 3, "
              f"{len(samples)} samples): p50 {statistics.median(samples):.1f} ms, "
              f"p99 {percentile(samples, 0.99):.1f} ms, after {results['routing warm-up']:.0f} s "
              f"of the same load; CPU time stolen by the host "
              f"{percent(results['latency steal'])}")


def report_throughput(results: dict[Any, Any], count: int) -> None:
    """Medians over the rounds; a ratio is taken within its round (the same machine state),
    then its median is reported, with the range of every figure."""
    ceilings = results["R"]
    rounds = len(ceilings)
    print(f"\n{count} events of quotient_familial, 3 partitions, one worker process, "
          f"{rounds} round(s)\n")
    print("| measurement | events/s (median) | range | ratio to R (median) | range "
          "| CPU stolen by the host (per round) |\n|---|---:|---:|---:|---:|---:|")
    print(f"| R: raw aiokafka consume-and-produce pass-through | "
          f"{statistics.median(ceilings):,.0f} | {spread(ceilings, '{:,.0f}')} | 1.00 | | "
          f"{_stolen(results, 'R')} |")
    for fan_out in FAN_OUTS:
        rates = results[fan_out]
        ratios = [rate / ceiling for rate, ceiling in zip(rates, ceilings, strict=True)]
        print(f"| routed, fan-out {fan_out} (input events/s) | {statistics.median(rates):,.0f} | "
              f"{spread(rates, '{:,.0f}')} | {statistics.median(ratios):.3f} | "
              f"{spread(ratios, '{:.3f}')} | {_stolen(results, fan_out)} |")


def _stolen(results: dict[Any, Any], measurement: Any) -> str:
    return ", ".join(percent(share) for share in results[("steal", measurement)])


def percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.0%}"


def spread(values: list[float], form: str) -> str:
    return f"{form.format(min(values))} – {form.format(max(values))}" if len(values) > 1 else ""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--latency-rate", type=float, default=None,
                        help="measure only the latency, at this rate (events/s)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of the throughput measurements (medians are reported)")
    parser.add_argument("--secure", action="store_true",
                        help="on the secure stack: SASL_SSL, ACLs, each principal its own")
    arguments = parser.parse_args()
    SECURE = arguments.secure
    report(asyncio.run(main(arguments.count, arguments.seed, arguments.latency_seconds,
                            arguments.latency_rate, arguments.repeat)), arguments.count)
