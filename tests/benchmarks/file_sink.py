"""File sink throughput against the configured broker and registry (default: the local stack).

1. Applies a fresh contract and writes ``--count`` deliveries (default 20,000) straight to its
   delivery topic, all of one day (the worst case: one file grows, and each flush copies it),
   as the integration tests do.
2. Times the sink in process, from its start until its group has committed every delivery (it
   commits only what is on disk): reading, decoding to CloudEvents JSON, each flush's copy,
   sync and rename, the commits.

Run: ``.venv/bin/python tests/benchmarks/file_sink.py [--count 20000]``. Prints one line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from aiokafka.errors import GroupCoordinatorNotAvailableError

from connectors.files.day_files import contract_folder
from connectors.files.sink import FileSink, files_group
from streams.settings import Settings
from tests.conftest import Services
from tests.integration.test_consume import _write_deliveries
from tests.integration.test_file_sink import FAR, NOV_1, _applied, _committed


async def measure(count: int, root: Path) -> tuple[float, int, int]:
    """(seconds, deliveries committed, bytes of the day's file) for ``count`` deliveries."""
    settings = Settings()
    services = Services(settings.kafka_bootstrap, settings.schema_registry_url)
    contract = await _applied(settings, services)
    await _write_deliveries(settings, services, contract, count, create=False,
                            attributes=lambda index: {"time": NOV_1, "expiresat": FAR})
    stop = asyncio.Event()
    started = time.perf_counter()
    sink = asyncio.ensure_future(FileSink(settings, contract, root).run(stop))
    done = 0
    while done < count and not sink.done():
        await asyncio.sleep(0.05)
        try:
            done = await _committed(settings, files_group(contract.id), contract.delivery_topic)
        except GroupCoordinatorNotAvailableError:  # the sink has not joined its group yet
            continue
    elapsed = time.perf_counter() - started
    stop.set()
    await sink
    size = sum(p.stat().st_size for p in contract_folder(root, contract.id).glob("*.jsonl"))
    return elapsed, done, size


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=20_000, help="deliveries to write")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        elapsed, written, size = asyncio.run(measure(args.count, Path(root)))
    print(f"file sink: {written} deliveries in {elapsed:.2f} s = "
          f"{written / elapsed:,.0f} deliveries/s, one day's file of {size / 2**20:.1f} MiB "
          f"(cpus: {os.cpu_count()})")


if __name__ == "__main__":
    main()
