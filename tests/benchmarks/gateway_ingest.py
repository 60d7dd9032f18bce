"""HTTP ingestion throughput of the gateway, beside ``circulation publish`` on the same run.

Against the configured broker and registry (default: the local stack):

1. Registers the catalog (``circulation schemas register``) and issues a gateway token for the
   dataset's provider (``provider.<provider>``; it replaces that provider's previous token).
2. Starts ``circulation api`` as a subprocess on ``--port`` (default: a free port).
3. ``--repeat`` rounds, each timing, on ``--count`` fresh synthetic events of ``--dataset``:
   ``circulation publish FILE`` end to end as a subprocess; single POSTs
   (``application/cloudevents+json``, one event per request) from ``--clients`` concurrent
   clients over keep-alive connections; batch POSTs (``application/cloudevents-batch+json``,
   ``--batch`` events per request) from the same clients. Every POST must be answered ``202``
   (the events are then acknowledged by Kafka, ``acks=all``).

Each measurement uses its own seed, so no event id repeats and the idempotency window never
spares a write. The events really are written to ``provider.<provider>.<dataset>``.

Run: ``.venv/bin/python tests/benchmarks/gateway_ingest.py [--count 5000] [--repeat 3]``.
Prints a markdown table: events/s per measurement (median and range over the rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from schemas.catalog import Catalog
from streams.dev.synthetic import generate
from streams.security.principals import provider
from streams.security.tokens import issue_token
from streams.settings import Settings
from tests.benchmarks.publish_throughput import cli
from tests.integration.gateway_process import free_port, running_gateway

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


def publish_file(events: list[dict[str, Any]]) -> float:
    """Seconds for ``circulation publish FILE`` on ``events``, end to end."""
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "events.jsonl"
        source.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events),
                          encoding="utf-8")
        seconds, run = cli("publish", str(source))
    if run.returncode:
        sys.exit(f"publish failed (exit {run.returncode}):\n{run.stdout}{run.stderr[-2000:]}")
    return seconds


async def post_all(url: str, token: str, bodies: list[bytes], media_type: str,
                   clients: int) -> float:
    """Seconds for ``clients`` concurrent clients to POST every body, each answered 202."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": media_type}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=120) as http:
        await http.get("/readyz")  # connections warm

        async def client() -> None:
            while not queue.empty():
                answer = await http.post("/v1/events", content=queue.get_nowait())
                if answer.status_code != 202:
                    sys.exit(f"POST answered {answer.status_code}: {answer.text[:500]}")

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - started


def encoded(events: list[dict[str, Any]], batch: int | None) -> list[bytes]:
    if batch is None:
        return [json.dumps(e).encode() for e in events]
    return [json.dumps(events[i:i + batch]).encode() for i in range(0, len(events), batch)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=5000, help="events per measurement")
    parser.add_argument("--dataset", default="statut_etudiant_boursier")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--batch", type=int, default=100, help="events per batch POST")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--port", type=int, default=0, help="the gateway's port (0: free)")
    parser.add_argument("--seed", type=int, default=11, help="first generator seed")
    args = parser.parse_args(argv)
    if min(args.count, args.clients, args.batch, args.repeat) < 1:
        parser.error("--count, --clients, --batch and --repeat must be at least 1")
    settings = Settings()
    source = Catalog.load().dataset(args.dataset).providers[0]

    _, run = cli("schemas", "register")
    if run.returncode:
        sys.exit(f"schemas register failed:\n{run.stdout}{run.stderr}")
    token = asyncio.run(issue_token(settings, provider(source)))
    environment = {**os.environ, "CIRCULATION_GATEWAY_MAX_BATCH_EVENTS": str(args.batch),
                   "CIRCULATION_GATEWAY_MAX_BODY_BYTES": str(64 * 1_048_576)}
    port = args.port or free_port()
    rates: dict[str, list[float]] = {"cli": [], "single": [], "batch": []}
    seeds = iter(range(args.seed, args.seed + 3 * args.repeat + 1))

    def fresh() -> list[dict[str, Any]]:
        return [{**e, "source": source} for e in generate(args.dataset, args.count, next(seeds))]

    with running_gateway(environment, port) as url:
        warm = fresh()[: args.batch]  # topic known, schema cached, connections open
        asyncio.run(post_all(url, token, encoded(warm, args.batch), BATCH, 1))
        for round_ in range(args.repeat):
            rates["cli"].append(args.count / publish_file(fresh()))
            rates["single"].append(args.count / asyncio.run(post_all(
                url, token, encoded(fresh(), None), SINGLE, args.clients)))
            rates["batch"].append(args.count / asyncio.run(post_all(
                url, token, encoded(fresh(), args.batch), BATCH, args.clients)))
            print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s"
                                                      for k, v in rates.items()),
                  file=sys.stderr)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"Ingesting {args.count:,} `{args.dataset}` events per measurement to "
          f"{settings.kafka_bootstrap}, {settings.topic_partitions} partitions, acks=all, "
          f"{args.repeat} interleaved round(s) (Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {load} at the end; the gateway, its clients "
          f"and the stack on the same machine).\n")
    print("| measurement | events/s, median | range | × `publish` (median of rounds) |")
    print("|---|---:|---:|---:|")
    labels = {"cli": "`circulation publish FILE` (subprocess, end to end)",
              "single": f"single POSTs, {args.clients} concurrent clients",
              "batch": f"batch POSTs of {args.batch}, {args.clients} concurrent clients"}
    for key, label in labels.items():
        ratio = statistics.median(r / c for r, c in zip(rates[key], rates["cli"], strict=True))
        print(f"| {label} | {statistics.median(rates[key]):,.0f} | "
              f"{min(rates[key]):,.0f}–{max(rates[key]):,.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
