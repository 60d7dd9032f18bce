"""Publishing throughput against the configured broker and registry (default: the local stack).

1. Registers the catalog (``circulation schemas register``), so neither measurement pays for it.
2. Writes a JSON-lines file of ``--count`` synthetic events (default 50,000): a round-robin mix
   of every dataset, or one dataset with ``--dataset``.
3. Times ``python -m streams.cli publish FILE`` end to end as a subprocess (interpreter start,
   validation, pseudonymisation, Avro encoding, producing with ``acks=all``, waiting for every
   acknowledgement): wall time and events/s.
4. Times the in-process ``Publisher`` loop on the same events: ``prepare`` alone, then
   ``prepare`` + ``send`` for every event and a final ``flush``.

The events really are written to the provider topics ``provider.<provider>.<dataset>`` (twice:
once per measurement). Settings come from ``CIRCULATION_*`` variables like the CLI's.

Run: ``.venv/bin/python tests/benchmarks/publish_throughput.py [--count 50000] [--dataset ID]``.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from connectors.publisher import Publisher
from schemas.catalog import Catalog
from streams.dev.synthetic import generate
from streams.settings import Settings

CLI = [sys.executable, "-m", "streams.cli"]


def events(count: int, seed: int, dataset: str | None) -> Iterator[dict[str, Any]]:
    """``count`` events of one dataset, or of every dataset in turn."""
    if dataset is not None:
        yield from generate(dataset, count, seed)
        return
    ids = [d.id for d in Catalog.load().datasets()]
    share, extra = divmod(count, len(ids))
    streams = [generate(d, share + (i < extra), seed) for i, d in enumerate(ids)]
    for group in itertools.zip_longest(*streams):
        yield from (e for e in group if e is not None)


def cli(*args: str, timeout: float = 1800) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run the command line; return (wall seconds, the completed process)."""
    env = {**os.environ, "COLUMNS": "200"}
    started = time.perf_counter()
    run = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True,
                         timeout=timeout, check=False)
    return time.perf_counter() - started, run


async def in_process(settings: Settings, batch: list[dict[str, Any]]) -> tuple[float, float]:
    """(seconds for prepare alone, seconds for prepare + send + flush) over ``batch``."""
    async with Publisher(settings) as publisher:
        publisher.prepare(batch[0])  # registry ids cached, connection warm
        await publisher.publish(batch[0])
        for event in {(e["source"], e["type"]): e for e in batch}.values():
            await publisher.send(publisher.prepare(event))  # topics known to exist
        await publisher.flush()

        started = time.perf_counter()
        for event in batch:
            publisher.prepare(event)
        prepare_only = time.perf_counter() - started

        started = time.perf_counter()
        futures = [await publisher.send(publisher.prepare(event)) for event in batch]
        await publisher.flush()
        await asyncio.gather(*futures)
        return prepare_only, time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=50_000, help="events to publish")
    parser.add_argument("--dataset", help="one dataset id (default: a mix of all datasets)")
    parser.add_argument("--seed", type=int, default=7, help="generator seed")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.dataset is not None:
        Catalog.load().dataset(args.dataset)  # fail early on an unknown id
    settings = Settings()

    seconds, run = cli("schemas", "register")
    if run.returncode:
        sys.exit(f"schemas register failed:\n{run.stdout}{run.stderr}")
    print(f"schemas registered in {seconds:.1f} s", file=sys.stderr)

    batch = list(events(args.count, args.seed, args.dataset))
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "events.jsonl"
        with source.open("w", encoding="utf-8") as out:
            for event in batch:
                out.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
        size = source.stat().st_size
        cli_seconds, run = cli("publish", str(source))
    published = re.search(r"published\W+(\d+)", run.stdout)
    if run.returncode or not published or int(published[1]) != len(batch):
        sys.exit(f"publish failed (exit {run.returncode}):\n{run.stdout}{run.stderr[-2000:]}")

    prepare_seconds, loop_seconds = asyncio.run(in_process(settings, batch))

    what = args.dataset or f"mix of {len(Catalog.load().datasets())} datasets"
    print(f"Publishing {len(batch):,} events ({what}, {size / len(batch):.0f} bytes of JSON "
          f"each) to {settings.kafka_bootstrap}, {settings.topic_partitions} partitions per "
          f"topic, acks=all (Python {platform.python_version()}, {os.cpu_count()} CPUs).\n")
    print("| measurement | wall time s | events/s | µs/event |")
    print("|---|---:|---:|---:|")
    for label, seconds in (
        ("`circulation publish FILE` (subprocess, end to end)", cli_seconds),
        ("`Publisher.prepare` only (validate, pseudonymise, encode)", prepare_seconds),
        ("`Publisher` loop: prepare + send, then flush", loop_seconds),
    ):
        print(f"| {label} | {seconds:.2f} | {len(batch) / seconds:,.0f} "
              f"| {seconds / len(batch) * 1e6:.1f} |")


if __name__ == "__main__":
    main()
