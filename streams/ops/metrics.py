"""Prometheus metrics of the bus, named by Prometheus conventions (``circulation_`` prefix, base
units, ``_total`` counters).

Two sources, two registries:

- the **routing workers** count what they route, deliver, withhold and dead-letter, and how
  long after publication an event's outcome was written (:data:`REGISTRY`, served by the
  worker on its metrics port; :class:`~streams.routing.tally.RoutingTally` collects a batch's
  decisions on the hot path and :func:`record_batch` publishes them once per batch), and the
  consent and population changes their state followers apply live (:func:`record_state_changes`:
  once, by the worker holding the subject's partition, never again at a restore or a restart;
  the commands that record them run too briefly to be scraped);
- the **lag exporter** (``circulation lag --serve PORT``) publishes the latest lag evaluation
  (:mod:`streams.ops.lag.exporter`, on a registry of its own: the exporter routes nothing).

Label cardinality is bounded by configuration: topics, contracts, subscribers, consumer groups,
partitions and fixed reason words. Never a person, a subject reference or an event id.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from typing import Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from streams.routing.tally import RoutingTally
from streams.state.directory import Change

REGISTRY = CollectorRegistry()
"""What the routing workers count, with the process's CPU and memory; each serves it on its
metrics port (:func:`serve`)."""
ProcessCollector(registry=REGISTRY)

EVENTS_ROUTED = Counter(
    "circulation_events_routed_total",
    "Provider events the routing workers took from provider topics (delivered, withheld or "
    "dead-lettered), by provider topic.", ["topic"], registry=REGISTRY)
DELIVERIES = Counter(
    "circulation_deliveries_total",
    "Events delivered to a subscriber's delivery topic, by subscriber and contract.",
    ["subscriber", "contract"], registry=REGISTRY)
WITHHELD = Counter(
    "circulation_withheld_total",
    "Routing decisions that withheld an event from a contract, by contract and reason "
    "(no_consent, objection, contract_inactive, contract_invalid; not_enrolled in records "
    "audited before contracts that do not follow a person stopped deciding about them).",
    ["subscriber", "contract", "reason"], registry=REGISTRY)
DEAD_LETTERS = Counter(
    "circulation_dead_letters_total",
    "Provider records written to the dead-letter topic (undecodable or invalid), by the "
    "provider topic they came from.", ["topic"], registry=REGISTRY)
INVALID_CONTRACTS = Gauge(
    "circulation_contracts_invalid",
    "Recorded contracts this routing worker cannot compile against its catalog (a dataset or "
    "field removed since): their events are withheld (contract_invalid) until they are fixed.",
    registry=REGISTRY)
STATE_PARTITIONS = Gauge(
    "circulation_state_partitions",
    "State partitions (population and consents) this routing worker holds: those of the "
    "provider partitions it is assigned.", registry=REGISTRY)
STATE_MEMORY = Gauge(
    "circulation_state_memory_bytes",
    "Bytes the routing worker's state stores hold in memory (write buffers, cached blocks, "
    "table readers); the rest of the state is on disk.", registry=REGISTRY)
CONSENT_CHANGES = Counter(
    "circulation_consent_changes_total",
    "Consent decisions (granted or withdrawn) the routing workers applied as they were "
    "recorded, by contract; each counted by the worker holding the subject's partition, not "
    "again when a worker restores its state.", ["contract", "status"], registry=REGISTRY)
POPULATION_CHANGES = Counter(
    "circulation_population_changes_total",
    "Population changes (enrolled or released) the routing workers applied as they were "
    "recorded, by contract; each counted by the worker holding the subject's partition, not "
    "again when a worker restores its state.", ["contract", "change"], registry=REGISTRY)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Seconds; the routing latency target (p99 under 5 s) sits on a bucket boundary."""


class BatchHistogram(Collector):
    """A histogram fed a batch at a time: one bisect per value, one lock per batch.

    prometheus_client's Histogram takes a lock per observation; a routing batch of a thousand
    events would take it a thousand times on the hot path.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float],
                 registry: CollectorRegistry | None = None) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(sorted(buckets))
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        bounds = self.bounds
        counts = [0] * (len(bounds) + 1)
        total = 0.0
        for value in values:
            counts[bisect_left(bounds, value)] += 1
            total += value
        with self._lock:
            for index, count in enumerate(counts):
                self._counts[index] += count
            self._sum += total

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        cumulative, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), counts, strict=True):
            running += count
            cumulative.append((bound, running))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], cumulative, total)
        return [family]


ROUTING_LATENCY = BatchHistogram(
    "circulation_routing_latency_seconds",
    "Time from an event's publication (its record timestamp on the provider topic) until "
    "every delivery, audit record or dead letter the bus wrote for it was acknowledged.",
    LATENCY_BUCKETS, registry=REGISTRY)


class RoutedRecord(Protocol):
    """What :func:`record_batch` reads of a routed source record."""

    @property
    def topic(self) -> str: ...

    @property
    def timestamp_ms(self) -> int | None: ...


def record_batch(tally: RoutingTally, records: Sequence[RoutedRecord],
                 done_at: float | None = None) -> None:
    """Publish a routed batch: events by topic, decisions, dead letters, and each event's
    latency from its record timestamp to ``done_at`` (seconds since the epoch, default now),
    the moment everything written for the batch was acknowledged."""
    done_at = time.time() if done_at is None else done_at
    by_topic: Tally[str] = Tally(record.topic for record in records)
    for topic, count in by_topic.items():
        EVENTS_ROUTED.labels(topic).inc(count)
    for (subscriber, contract), count in tally.delivered.items():
        DELIVERIES.labels(subscriber, contract).inc(count)
    for (subscriber, contract, reason), count in tally.withheld.items():
        WITHHELD.labels(subscriber, contract, reason).inc(count)
    for topic, count in tally.dead_letters.items():
        DEAD_LETTERS.labels(topic).inc(count)
    INVALID_CONTRACTS.set(tally.invalid_contracts)
    ROUTING_LATENCY.observe_many(max(done_at - record.timestamp_ms / 1000, 0.0)
                                 for record in records if record.timestamp_ms is not None)


def record_state(partitions: int, memory: int) -> None:
    """The state partitions a worker holds and the bytes their stores keep in memory."""
    STATE_PARTITIONS.set(partitions)
    STATE_MEMORY.set(memory)


def record_state_changes(changes: Iterable[Change]) -> None:
    """Consent decisions and population changes a state follower applied live
    (:class:`~streams.state.follower.StateFollower`), counted by contract and kind: never by
    subject."""
    consents: Tally[tuple[str, str]] = Tally()
    enrolments: Tally[tuple[str, str]] = Tally()
    for change in changes:
        if change.consent is not None:
            consents[(change.contract_id, change.consent)] += 1
        elif change.enrolled is not None:
            enrolments[(change.contract_id, "enrolled" if change.enrolled else "released")] += 1
    for labels, count in consents.items():
        CONSENT_CHANGES.labels(*labels).inc(count)
    for labels, count in enrolments.items():
        POPULATION_CHANGES.labels(*labels).inc(count)


def serve(port: int, registry: CollectorRegistry,
          addr: str = "0.0.0.0") -> WSGIServer:  # noqa: S104
    """Serve ``registry`` on ``http://addr:port/metrics`` from a daemon thread; the server is
    returned so that a caller may ``shutdown()`` it."""
    server, _ = start_http_server(port, addr=addr, registry=registry)
    return server
