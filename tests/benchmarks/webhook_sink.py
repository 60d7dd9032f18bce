"""Webhook sink throughput against the configured broker and registry (default: the local stack).

1. Writes ``--count`` deliveries (default 3,000) straight to a fresh contract's delivery topic
   (three partitions), as the integration tests do.
2. Starts a local endpoint on 127.0.0.1 (a threaded ``http.server`` that verifies every call
   with the ``standardwebhooks`` verifier and answers 200 at once).
3. Times the sink in process, from its start to the endpoint's acceptance of the last delivery:
   reading, decoding to CloudEvents JSON, signing, one POST per delivery, and one offset commit
   after each (at-least-once), partitions in parallel.

Run: ``.venv/bin/python tests/benchmarks/webhook_sink.py [--count 3000]``. Prints one line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import time
from collections.abc import Sequence

from connectors.webhook.signing import Signer
from connectors.webhook.sink import run
from streams.settings import Settings
from tests.conftest import Services
from tests.integration.test_webhook_sink import _contract, _write_deliveries
from tests.integration.webhook_receiver import ACCEPT, Receiver

SECRET = "whsec_" + base64.b64encode(b"benchmark-secret-thirty-two-byte").decode()


async def measure(count: int) -> tuple[float, int]:
    """(seconds, deliveries accepted) for ``count`` deliveries."""
    settings = Settings(webhook_allow_private=True)
    services = Services(settings.kafka_bootstrap, settings.schema_registry_url)
    receiver = Receiver(SECRET, lambda number, event: ACCEPT)
    try:
        contract = _contract(receiver.url)
        await _write_deliveries(settings, services, contract, count)
        stop = asyncio.Event()
        started = time.perf_counter()
        sink = asyncio.ensure_future(run(settings, contract, Signer(SECRET, "V"), stop))
        while len(receiver.calls.accepted) < count and not sink.done():
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        stop.set()
        await sink
    finally:
        receiver.close()
    return elapsed, len(receiver.calls.accepted)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=3000, help="deliveries to send")
    args = parser.parse_args(argv)
    elapsed, accepted = asyncio.run(measure(args.count))
    print(f"webhook sink: {accepted} deliveries in {elapsed:.2f} s = "
          f"{accepted / elapsed:,.0f} deliveries/s (cpus: {os.cpu_count()})")


if __name__ == "__main__":
    main()
