"""What the webhook sink counts, on the bus's Prometheus conventions (``circulation_`` prefix,
seconds, ``_total`` counters), in a registry of its own: a sink runs in its own process and
serves it on ``CIRCULATION_METRICS_PORT``.

Labels are the contract (bounded by configuration) and, for failures, the HTTP status or one
of the words ``timeout``, ``connection`` and ``refused``: never a person, an event id or a URL.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

DELIVERED = Counter(
    "circulation_webhook_deliveries_total",
    "Deliveries the subscriber's endpoint accepted (2xx), by contract.",
    ["contract"], registry=REGISTRY)
FAILURES = Counter(
    "circulation_webhook_failures_total",
    "Webhook calls that were not accepted, by contract and status (the HTTP status, or "
    "timeout, connection or refused when no answer came or the address was refused).",
    ["contract", "status"], registry=REGISTRY)
DEAD_LETTERS = Counter(
    "circulation_webhook_dead_letters_total",
    "Deliveries written to the dead-letter topic once the retry budget was spent, by contract.",
    ["contract"], registry=REGISTRY)
LATENCY = Histogram(
    "circulation_webhook_call_seconds",
    "Time from sending a webhook call to its answer (or its failure), by contract.",
    ["contract"], registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
DISABLED = Gauge(
    "circulation_webhook_endpoint_disabled",
    "1 once the contract's endpoint answered 410 Gone: the sink stopped and commits nothing "
    "more until the endpoint is fixed and the sink started again.",
    ["contract"], registry=REGISTRY)
