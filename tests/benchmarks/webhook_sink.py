"""Webhook sink throughput against the configured broker and registry (default: the local stack).

1. Writes ``--count`` deliveries (default 3,000) straight to a fresh contract's delivery topic
   (three partitions), as the integration tests do.
2. Starts a local endpoint on 127.0.0.1 in a process of its own (a threaded ``http.server``
   that verifies every call with the ``standardwebhooks`` verifier and answers 200 at once).
3. Times the sink in process, from its start until its group has committed every delivery
   (it commits only what the endpoint accepted): reading, decoding to CloudEvents JSON,
   signing, one POST per delivery, the commits, partitions in parallel.

Run: ``.venv/bin/python tests/benchmarks/webhook_sink.py [--count 3000]``. Prints one line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence

from connectors.webhook.signing import Signer
from connectors.webhook.sink import run
from streams.settings import Settings
from tests.conftest import Services
from tests.integration.test_webhook_sink import _committed, _contract, _write_deliveries
from tests.integration.webhook_receiver import ACCEPT, Receiver

SECRET = "whsec_" + base64.b64encode(b"benchmark-secret-thirty-two-byte").decode()


def serve(urls: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """The endpoint's process: serve until terminated."""
    receiver = Receiver(SECRET, lambda number, event: ACCEPT)
    urls.put(receiver.url)
    threading.Event().wait()


async def measure(count: int) -> tuple[float, int]:
    """(seconds, deliveries committed) for ``count`` deliveries."""
    settings = Settings(webhook_allow_private=True)
    services = Services(settings.kafka_bootstrap, settings.schema_registry_url)
    urls: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    endpoint = multiprocessing.Process(target=serve, args=(urls,), daemon=True)
    endpoint.start()
    try:
        contract = _contract(urls.get(timeout=30))
        await _write_deliveries(settings, services, contract, count)
        stop = asyncio.Event()
        started = time.perf_counter()
        sink = asyncio.ensure_future(run(settings, contract, Signer(SECRET, "V"), stop))
        done = 0
        while done < count and not sink.done():
            await asyncio.sleep(0.05)
            done = await _committed(settings, contract)
        elapsed = time.perf_counter() - started
        stop.set()
        await sink
    finally:
        endpoint.terminate()
    return elapsed, done


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=3000, help="deliveries to send")
    args = parser.parse_args(argv)
    elapsed, accepted = asyncio.run(measure(args.count))
    print(f"webhook sink: {accepted} deliveries in {elapsed:.2f} s = "
          f"{accepted / elapsed:,.0f} deliveries/s (cpus: {os.cpu_count()})")


if __name__ == "__main__":
    main()
