"""The lag exporter: the latest lag verdicts on ``/metrics`` for Prometheus.

It serves a registry of its own (lag metrics and the exporter's process metrics, nothing
routed), refreshed at every sample; between samples Prometheus reads the last verdicts.
"""

from __future__ import annotations

import structlog

from streams.ops.lag.monitor import LagRun
from streams.ops.lag.probe import LagProbeError
from streams.ops.metrics import LagCollector, lag_registry, serve

log = structlog.get_logger(__name__)


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
