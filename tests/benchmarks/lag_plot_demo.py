"""The picture of ``circulation lag --plot``, from a real run on the real broker.

A delivery topic of its own (``deliver.<subscriber>.demo``, two partitions) receives 10 records
per second per partition for the whole run, and four consumer groups of that subscriber read it:

- ``keeps-up`` reads everything and commits after every fetch;
- ``falls-behind`` commits, but reads about three records per second per partition;
- ``stops-committing`` keeps up and commits until ``--stall-at``, then keeps polling (a live
  member) without committing;
- ``stops`` keeps up until ``--stop-at``, then closes its consumer.

Meanwhile ``circulation lag --subscriber <subscriber> --watch --json --duration D --window W
--samples N --plot OUT`` samples them; the plot shows each group's lag and status over the run
(a group turns STALL or STOP once a whole window has passed without its offsets moving). The
topic is deleted at the end.

Run from the repository root: ``.venv/bin/python -m tests.benchmarks.lag_plot_demo
[--out deploy/observability/lag.png]`` (a module, for the groups it shares with the integration
test, :mod:`tests.lag_groups`), against the configured
broker (``CIRCULATION_KAFKA_BOOTSTRAP``, by default the local stack). About 90 seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.kafka import clients
from streams.settings import Settings
from tests.lag_groups import LagGroups

CLI = [sys.executable, "-m", "streams.cli"]


async def run(args: argparse.Namespace) -> int:
    options = clients.connection_options(Settings())
    subscriber = args.subscriber or f"mairie-demo-{uuid.uuid4().hex[:4]}"
    demo = LagGroups(options, subscriber, f"deliver.{subscriber}.demo")
    stall, stop = asyncio.Event(), asyncio.Event()
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        await admin.create_topics([NewTopic(demo.topic, num_partitions=2, replication_factor=1)])
        tasks = [asyncio.create_task(coroutine) for coroutine in (
            demo.produce(size=200, interval=0.1), demo.keeps_up("keeps-up"),
            demo.falls_behind(), demo.keeps_up("stops-committing", stall),
            demo.keeps_up("stops", stop, leave=True))]
        await asyncio.sleep(args.warmup)
        command = [*CLI, "lag", "--subscriber", demo.subscriber, "--watch", "--json",
                   "--duration", str(args.duration), "--window", str(args.window),
                   "--samples", str(args.samples), "--plot", str(args.out)]
        print("$", " ".join(["circulation", *command[3:]]), flush=True)
        began = time.monotonic()
        lag = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL,
                                                   env={**os.environ})
        await asyncio.sleep(max(args.stall_at - (time.monotonic() - began), 0))
        stall.set()
        print(f"t={time.monotonic() - began:.0f}s: stops-committing stops committing",
              flush=True)
        await asyncio.sleep(max(args.stop_at - (time.monotonic() - began), 0))
        stop.set()
        print(f"t={time.monotonic() - began:.0f}s: stops closes its consumer", flush=True)
        code = await lag.wait()
        print(f"circulation lag exited {code}; plot in {args.out}")
        return 0 if args.out.exists() else 1
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await admin.delete_topics([demo.topic])
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("deploy/observability/lag.png"))
    parser.add_argument("--subscriber", help="default: mairie-demo-<random>")
    parser.add_argument("--duration", type=float, default=80.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--samples", type=int, default=11)
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds of traffic before sampling starts")
    parser.add_argument("--stall-at", type=float, default=20.0)
    parser.add_argument("--stop-at", type=float, default=35.0)
    raise SystemExit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
