"""How fast ``circulation reconcile`` accounts a window: events per second.

On a fresh private stack (ports of its own, a temporary run folder, the jar cache shared): three
``population: all``, ``consent: not_required`` contracts on ``quotient_familial``, N events on
its provider topic, one ``circulation worker`` routes them all (N × 3 deliveries and N × 3 audit
records) and stops. Then reconcile runs over the last hour, which holds exactly that run:

- **in process**: reading the books (provider headers, audit trail, deliveries, dead letters,
  state) and reconciling them, timed apart; events/s = N / (read + reconcile);
- **the command**: ``circulation reconcile --json`` as an operator runs it, wall time, the
  interpreter's start included.

Each is measured ``--repeat`` times; the run must be clean, or the figures are not reported.

Run: ``.venv/bin/python tests/benchmarks/reconcile_speed.py [--count 20000] [--repeat 3]``,
from the repository root. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import routing_throughput as rt  # this folder's: contracts, events, worker processes

from streams.dev.localstack import LocalStack
from streams.dev.settings import LocalStackSettings
from streams.ops.accounting.books import reconcile
from streams.ops.accounting.reading import read_ledger
from streams.settings import Settings

STACK = LocalStackSettings(local_kafka_port=29192, local_controller_port=29193,
                           local_registry_port=28281, local_identity_port=28380)
"""This benchmark's stack: ports of its own, so that it never meets another benchmark's."""
FAN_OUT = 3
WINDOW = timedelta(hours=1)


async def route(settings: Settings, count: int, seed: int, run_dir: Path) -> None:
    """Publish ``count`` events and let one worker route them all under three contracts."""
    contracts = await rt.apply_contracts(settings, FAN_OUT)
    await rt.produce_all(settings, "provider.cnaf.quotient_familial",
                         rt.prepared_events(settings, count, seed))
    worker = rt.start_worker(settings, run_dir / "worker.log", cwd=run_dir)
    try:
        await rt.written_span(settings, [c.delivery_topic for c in contracts], count * FAN_OUT,
                              900)
    finally:
        rt.stop_worker(worker)  # SIGTERM: the worker commits what it routed


async def in_process(settings: Settings, count: int) -> tuple[float, float]:
    """(read seconds, reconcile seconds); refuses a window that is not exactly the run."""
    started = time.perf_counter()
    ledger = await read_ledger(settings, WINDOW, lambda kind, n: None)
    read = time.perf_counter() - started
    started = time.perf_counter()
    found = reconcile(ledger.books, ledger.window, ledger.concerns, ledger.read_at.date())
    accounted = time.perf_counter() - started
    if not found.clean or found.events != count:
        raise RuntimeError(f"not a clean window of {count} events: {found.events} events, "
                           f"{len(found.gaps)} gaps")
    return read, accounted


def command(settings: Settings, count: int) -> float:
    started = time.perf_counter()
    done = subprocess.run([*rt.CLI, "reconcile", "--json"], env=rt.env_of(settings),
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    found = json.loads(done.stdout)
    if done.returncode != 0 or found["events"] != count:
        raise RuntimeError(f"reconcile exited {done.returncode} over {found['events']} events")
    return wall


def main(count: int, seed: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder)
        stack = LocalStack(STACK.model_copy(update={"local_data_dir": run_dir / "stack"}))
        settings = STACK.model_copy(update={"local_data_dir": run_dir / "stack"}).bus_settings()
        stack.up(fresh=True)
        try:
            subprocess.run([*rt.CLI, "schemas", "register"], env=rt.env_of(settings), check=True,
                           capture_output=True)
            asyncio.run(route(settings, count, seed, run_dir))
            runs = [asyncio.run(in_process(settings, count)) for _ in range(repeat)]
            walls = [command(settings, count) for _ in range(repeat)]
        finally:
            stack.down()
    report(count, runs, walls)


def report(count: int, runs: list[tuple[float, float]], walls: list[float]) -> None:
    totals = [read + accounted for read, accounted in runs]
    print(f"| reconcile, {count:,} events × {FAN_OUT} contracts ({count * FAN_OUT:,} decisions "
          f"and deliveries), {len(runs)} runs | median | range |")
    print("|---|---|---|")
    rows = [("in process: events/s", [count / t for t in totals], "{:,.0f}"),
            ("reading the books, s", [r for r, _ in runs], "{:.2f}"),
            ("reconciling them, s", [a for _, a in runs], "{:.2f}"),
            ("the command, events/s", [count / w for w in walls], "{:,.0f}"),
            ("the command, wall s", walls, "{:.2f}")]
    for name, values, form in rows:
        print(f"| {name} | {form.format(statistics.median(values))} | "
              f"{form.format(min(values))}–{form.format(max(values))} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    main(arguments.count, arguments.seed, arguments.repeat)
