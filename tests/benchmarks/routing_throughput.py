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
   p99, after a 10 s warm-up (the broker is freshly started: its JIT compiles under the load).

Run: ``.venv/bin/python tests/benchmarks/routing_throughput.py [--count 30000] [--repeat 3]``.
Prints a markdown table. On a machine whose speed drifts, ``--repeat N`` measures R and the three
fan-outs N times, interleaved, and reports medians and ranges; each ratio is taken within its
round, where R and the routed rate met the same machine. It needs Java and Maven like
``circulation local up`` (the jars come from the cache).
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from connectors.publisher import OutgoingEvent, Publisher
from schemas.catalog import Catalog
from schemas.codec import rfc3339_millis
from schemas.registry import SchemaRegistry
from schemas.synthetic import generate
from streams.contract_store import ContractStore
from streams.contracts import Contract
from streams.localstack import LocalStack
from streams.settings import Settings
from streams.topics import TopicSpec, ensure_topics

CLI = [sys.executable, "-m", "streams.cli"]
FAN_OUTS = (1, 3, 10)
WARM_UP_SECONDS = 10.0
"""Published before latencies count: a fresh broker's JIT, the first topic, schema and batch."""
CONTRACT = (Path(__file__).resolve().parents[2] / "deploy" / "contracts"
            / "lyon-cantine-2026.yaml")


def private_settings(run_dir: Path) -> Settings:
    """Settings of a private stack on ports of its own."""
    return Settings(local_data_dir=run_dir, local_kafka_port=29092,
                    local_controller_port=29093, local_registry_port=28081,
                    kafka_bootstrap="127.0.0.1:29092",
                    schema_registry_url="http://127.0.0.1:28081/apis/ccompat/v7")


def env_of(settings: Settings) -> dict[str, str]:
    return {**os.environ, "CIRCULATION_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "CIRCULATION_SCHEMA_REGISTRY_URL": settings.schema_registry_url,
            "CIRCULATION_LOG_LEVEL": "warning"}


def prepared_events(settings: Settings, count: int, seed: int) -> list[OutgoingEvent]:
    publisher = Publisher(settings)
    return [publisher.prepare(e) for e in generate("quotient_familial", count, seed,
                                                   provider="cnaf")]


async def produce_all(settings: Settings, topic: str, events: list[OutgoingEvent]) -> None:
    producer = AIOKafkaProducer(**settings.kafka_client_options(), linger_ms=20,
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
    consumer = AIOKafkaConsumer(source, **settings.kafka_client_options(),
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=8 << 20, fetch_max_bytes=32 << 20)
    producer = AIOKafkaProducer(**settings.kafka_client_options(), linger_ms=5,
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


async def apply_contracts(settings: Settings, fan_out: int) -> list[Contract]:
    catalog = Catalog.load()
    base = yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))
    contracts = [Contract.checked({**base, "id": f"bench-{fan_out}-{i}",
                                   "subscriber": f"bench-subscriber-{i}",
                                   "population": "all", "consent": "not_required"}, catalog)
                 for i in range(fan_out)]
    registry = SchemaRegistry(settings.schema_registry_url)
    await ContractStore(settings, registry, catalog).apply(contracts)
    registry.close()
    return contracts


async def written_span(settings: Settings, topics: list[str], expected: int,
                       timeout: float) -> tuple[float, float]:
    """(first, last) broker timestamps once ``expected`` records are on ``topics``."""
    consumer = AIOKafkaConsumer(*topics, **settings.kafka_client_options(),
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


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*CLI, "worker"], env=env_of(settings), stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)


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


async def latency(settings: Settings, rate: float, seconds: float, seed: int,
                  log: Path) -> list[float]:
    """Publish → delivery latencies (ms) at ``rate`` events/s, fan-out 3."""
    contracts = await apply_contracts(settings, 3)
    worker = start_worker(settings, log)
    consumer = AIOKafkaConsumer(contracts[0].delivery_topic, **settings.kafka_client_options(),
                                auto_offset_reset="latest", enable_auto_commit=False)
    await consumer.start()
    samples: list[float] = []
    measured_from = [datetime.max.replace(tzinfo=UTC)]
    try:
        await asyncio.sleep(15)  # the worker joins its group and reads the state topics
        async with Publisher(settings) as publisher:
            # Validated and encoded before the clock starts, stamped with their publish time as
            # they are sent: the load generator shares the machine's two cores with the broker
            # and the worker, and should take as little of them as it can.
            count = int(rate * (seconds + WARM_UP_SECONDS))
            prepared = [publisher.prepare(event) for event in
                        generate("quotient_familial", count, seed, provider="cnaf")]
            reader = asyncio.create_task(_read_latencies(consumer, samples, measured_from))
            began = time.perf_counter()
            for index, outgoing in enumerate(prepared):
                if index == int(rate * WARM_UP_SECONDS):  # first topic, schema, batch costs
                    measured_from[0] = datetime.now(UTC)
                await publisher.send(stamped(outgoing, datetime.now(UTC)))
                await asyncio.sleep(max(0.0, began + (index + 1) / rate - time.perf_counter()))
            await publisher.flush()
            await asyncio.sleep(3)
            reader.cancel()
    finally:
        await consumer.stop()
        stop_worker(worker)
    return samples


def stamped(outgoing: OutgoingEvent, now: datetime) -> OutgoingEvent:
    """``outgoing`` with its CloudEvents ``time`` set to ``now``, the moment it is published."""
    headers = [(name, rfc3339_millis(now).encode() if name == "ce_time" else value)
               for name, value in outgoing.headers]
    return dataclasses.replace(outgoing, headers=headers)


async def _read_latencies(consumer: AIOKafkaConsumer, samples: list[float],
                          measured_from: list[datetime]) -> None:
    while True:
        for records in (await consumer.getmany(timeout_ms=100)).values():
            now = datetime.now(UTC)
            for record in records:
                sent = datetime.fromisoformat(dict(record.headers)["ce_time"].decode()
                                              .replace("Z", "+00:00"))
                if sent >= measured_from[0]:
                    samples.append((now - sent).total_seconds() * 1000)


class StolenTime:
    """The share of the machine's CPU time that went to other guests of the host during a
    measurement (``steal`` in /proc/stat). On a shared virtual machine it is one way to tell a
    slow run from a slow program; only one: on the development machine R also halved between
    rounds with nothing stolen. ``share`` stays None where /proc/stat does not exist."""

    share: float | None = None

    def __enter__(self) -> StolenTime:
        self._before = _cpu_times()
        return self

    def __exit__(self, *_: object) -> None:
        after = _cpu_times()
        if self._before and after:
            spent = [a - b for a, b in zip(after, self._before, strict=True)]
            self.share = spent[7] / sum(spent) if sum(spent) else 0.0


def _cpu_times() -> list[int] | None:
    """user, nice, system, idle, iowait, irq, softirq, steal (clock ticks, all CPUs)."""
    try:
        first = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0]
    except OSError:
        return None
    return [int(value) for value in first.split()[1:9]]


def fresh_stack(settings: Settings) -> LocalStack:
    stack = LocalStack(settings)
    stack.up(fresh=True)
    subprocess.run([*CLI, "schemas", "register"], env=env_of(settings), check=True,
                   capture_output=True)
    return stack


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main(count: int, seed: int, latency_seconds: float,
               latency_rate: float | None = None, repeat: int = 1) -> dict[Any, Any]:
    results: dict[Any, Any] = {}
    with tempfile.TemporaryDirectory() as run_dir:
        settings = private_settings(Path(run_dir))
        # The stack's own calls run their event loops: keep them off this one.
        stack = await asyncio.to_thread(fresh_stack, settings)
        try:
            if latency_rate is not None:
                await measure_latency(results, settings, latency_rate, latency_seconds, seed,
                                      Path(run_dir))
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
                    await asyncio.to_thread(fresh_stack, settings)
                    with StolenTime() as stolen:
                        results[fan_out].append(await routed(
                            settings, events, fan_out, Path(run_dir) / f"worker-{fan_out}.log"))
                    results[("steal", fan_out)].append(stolen.share)
                await asyncio.to_thread(stack.down)
                await asyncio.to_thread(fresh_stack, settings)
            await measure_latency(results, settings, statistics.median(results[3]) / 2,
                                  latency_seconds, seed, Path(run_dir))
        finally:
            await asyncio.to_thread(stack.down)
    return results


async def measure_latency(results: dict[Any, Any], settings: Settings, rate: float,
                          seconds: float, seed: int, run_dir: Path) -> None:
    """The latency run at ``rate``, with the CPU time stolen meanwhile, into ``results``."""
    with StolenTime() as stolen:
        results["latency"] = await latency(settings, rate, seconds, seed + 1,
                                           run_dir / "worker-latency.log")
    results["rate"] = rate
    results["latency steal"] = stolen.share


def report(results: dict[Any, Any], count: int) -> None:
    if "R" in results:
        report_throughput(results, count)
    samples = results["latency"]
    if samples:
        print(f"\nlatency publish → delivery at {results['rate']:,.0f} events/s (fan-out 3, "
              f"{len(samples)} samples): p50 {statistics.median(samples):.1f} ms, "
              f"p99 {percentile(samples, 0.99):.1f} ms; CPU time stolen by the host "
              f"{_percent(results['latency steal'])}")


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
          f"{statistics.median(ceilings):,.0f} | {_span(ceilings, '{:,.0f}')} | 1.00 | | "
          f"{_stolen(results, 'R')} |")
    for fan_out in FAN_OUTS:
        rates = results[fan_out]
        ratios = [rate / ceiling for rate, ceiling in zip(rates, ceilings, strict=True)]
        print(f"| routed, fan-out {fan_out} (input events/s) | {statistics.median(rates):,.0f} | "
              f"{_span(rates, '{:,.0f}')} | {statistics.median(ratios):.3f} | "
              f"{_span(ratios, '{:.3f}')} | {_stolen(results, fan_out)} |")


def _stolen(results: dict[Any, Any], measurement: Any) -> str:
    return ", ".join(_percent(share) for share in results[("steal", measurement)])


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.0%}"


def _span(values: list[float], form: str) -> str:
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
    arguments = parser.parse_args()
    report(asyncio.run(main(arguments.count, arguments.seed, arguments.latency_seconds,
                            arguments.latency_rate, arguments.repeat)), arguments.count)
