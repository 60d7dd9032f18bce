"""The lag exporter: the latest lag verdicts on ``/metrics`` for Prometheus.

It serves a registry of its own (lag metrics and the exporter's process metrics, nothing
routed), refreshed at every sample; between samples Prometheus reads the last verdicts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from streams.ops.lag.model import GroupLag, Status
from streams.ops.lag.monitor import LagRun
from streams.ops.lag.probe import LagProbeError
from streams.ops.metrics import serve

log = structlog.get_logger(__name__)


class LagCollector(Collector):
    """Publishes the latest lag evaluation, whatever groups it holds (no stale series)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._groups: list[GroupLag] = []
        self._updated: float | None = None
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def update(self, groups: Sequence[GroupLag], at: float | None = None) -> None:
        with self._lock:
            self._groups = list(groups)
            self._updated = time.time() if at is None else at

    def describe(self) -> Iterable[Metric]:
        return list(self._families([], None))

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            groups, updated = self._groups, self._updated
        return list(self._families(groups, updated))

    @staticmethod
    def _families(groups: Sequence[GroupLag], updated: float | None) -> Iterator[Metric]:
        records = GaugeMetricFamily(
            "circulation_consumer_lag_records",
            "Records between a consumer group's committed offset and the log end offset.",
            labels=["group", "subscriber", "topic", "partition"])
        seconds = GaugeMetricFamily(
            "circulation_consumer_lag_seconds",
            "Age of the oldest record a consumer group has not consumed (0 when caught up).",
            labels=["group", "subscriber", "topic", "partition"])
        committed = GaugeMetricFamily(
            "circulation_consumer_committed_offset",
            "A consumer group's committed offset (the next record it will read).",
            labels=["group", "subscriber", "topic", "partition"])
        end = GaugeMetricFamily(
            "circulation_topic_log_end_offset",
            "The log end offset of a watched partition (offset of the next record written).",
            labels=["topic", "partition"])
        status = GaugeMetricFamily(
            "circulation_consumer_group_status",
            "A consumer group's status over the sliding window, its worst partition's, as in "
            "Burrow: " + ", ".join(f"{s.value}={s.name}" for s in Status) + ".",
            labels=["group", "subscriber"])
        members = GaugeMetricFamily(
            "circulation_consumer_group_members",
            "Active members of a consumer group.", labels=["group", "subscriber"])
        ends: dict[tuple[str, str], int] = {}
        for group in groups:
            who = group.subscriber or ""
            status.add_metric([group.group, who], float(group.status))
            if group.members is not None:
                members.add_metric([group.group, who], float(group.members))
            for partition in group.partitions:
                labels = [group.group, who, partition.topic, str(partition.partition)]
                if partition.lag is not None:
                    records.add_metric(labels, float(partition.lag))
                if partition.lag_seconds is not None:
                    seconds.add_metric(labels, partition.lag_seconds)
                if partition.committed is not None:
                    committed.add_metric(labels, float(partition.committed))
                if partition.end is not None:
                    ends[(partition.topic, str(partition.partition))] = partition.end
        for (topic, number), offset in sorted(ends.items()):
            end.add_metric([topic, number], float(offset))
        yield from (records, seconds, committed, end, status, members)
        evaluated = GaugeMetricFamily(
            "circulation_lag_evaluated_timestamp_seconds",
            "When the lag exporter last evaluated the consumer groups (Unix time).")
        if updated is not None:
            evaluated.add_metric([], updated)
        yield evaluated


def lag_registry() -> tuple[CollectorRegistry, LagCollector]:
    """A registry for the lag exporter: lag metrics and the exporter's own process metrics."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry, LagCollector(registry)


class LagExporter:
    """Publishes each evaluated sample of a :func:`~streams.ops.lag.monitor.monitor_lag` run."""

    def __init__(self, collector: LagCollector) -> None:
        self._collector = collector

    @classmethod
    def serve(cls, port: int, bind: str) -> LagExporter:
        """Start serving on ``http://bind:port/metrics``; :class:`LagProbeError` when the port
        cannot be had (the command reports it like any other failure to watch lag)."""
        registry, collector = lag_registry()
        try:
            serve(port, registry, bind)
        except OSError as exc:
            raise LagProbeError(f"cannot serve metrics on {bind}:{port}: {exc}") from exc
        log.info("serving lag metrics", port=port, bind=bind)
        return cls(collector)

    def publish(self, run: LagRun) -> None:
        """Export the run's latest verdicts."""
        self._collector.update(run.report, run.at)
