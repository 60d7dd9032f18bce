"""Enrolment from a file against the configured broker and registry (default: the local stack).

1. Applies the example contract ``lyon-cantine-2026`` (``deploy/contracts``), idempotently.
2. Writes ``--count`` synthetic persons (default 30,000, a commune's families) as a
   spreadsheet's CSV export: byte-order mark, ``;``, CRLF, a ``NIR`` column among others.
3. Times each step in process: reading and checking the file, resolving references (an HMAC per
   NIR), the contract lookup, writing the population records and their one fence round.
4. Times ``python -m streams.cli population add CONTRACT --from-file FILE`` end to end as a
   subprocess (interpreter start included, stdout to a file), then ``consent grant`` and
   ``consent withdraw`` (records, fence, and a withdrawal's erasure notices) on the same file.

The records really are written to ``bus.population``, ``bus.consents`` and the contract's
delivery topic: run it against a development stack, not a shared cluster. Settings come from
``CIRCULATION_*`` variables like the CLI's.

Run: ``.venv/bin/python tests/benchmarks/enrolment_from_file.py [--count 30000]``. Prints a
markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from schemas.catalog import Catalog
from schemas.registry import SchemaRegistry
from streams.dev.synthetic import people
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.contract_files import load_file
from streams.state.contract_store import ContractStore
from streams.state.subject_lists import read_subject_list
from streams.state.subjects import distinct, find_contract, resolve, set_population

CLI = [sys.executable, "-m", "streams.cli"]
CONTRACT = Path(__file__).resolve().parents[2] / "deploy" / "contracts" / "lyon-cantine-2026.yaml"
Result = TypeVar("Result")


def timed(step: Callable[[], Result]) -> tuple[float, Result]:
    started = time.perf_counter()
    result = step()
    return time.perf_counter() - started, result


def export(path: Path, count: int, seed: int) -> None:
    """What Excel's “CSV UTF-8” writes, French settings."""
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        out.write("Nom;Prénom;NIR;Commune\r\n")
        for person in people(seed, count):
            out.write(f"{person.nom_naissance};{person.prenoms};{person.nir};Lyon\r\n")


def apply_contract(settings: Settings) -> Contract:
    catalog = Catalog.load()
    document, _, problems = load_file(CONTRACT)
    if problems:
        sys.exit(f"{CONTRACT}: {problems}")
    contract = Contract.checked(document, catalog)
    registry = SchemaRegistry(settings.schema_registry_url)
    try:
        asyncio.run(ContractStore(settings, registry, catalog).apply([contract]))
    finally:
        registry.close()
    return contract


def cli(*args: str, out: Path) -> float:
    env = {**os.environ, "COLUMNS": "200"}
    started = time.perf_counter()
    with out.open("w") as stdout:
        run = subprocess.run([*CLI, *args], env=env, stdout=stdout, stderr=subprocess.PIPE,
                             text=True, timeout=3600, check=False)
    if run.returncode:
        sys.exit(f"{' '.join(args[:2])} failed (exit {run.returncode}):\n{run.stderr[-2000:]}")
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=30_000, help="persons in the file")
    parser.add_argument("--seed", type=int, default=2026, help="generator seed")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    settings = Settings()
    contract = apply_contract(settings)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "familles.csv"
        export(path, args.count, args.seed)
        size = path.stat().st_size
        steps: list[tuple[str, float]] = []
        seconds, listed = timed(lambda: read_subject_list(str(path)))
        steps.append(("read and check the file", seconds))
        seconds, resolved = timed(lambda: distinct(resolve(settings, listed))[0])
        steps.append(("resolve references (an HMAC each)", seconds))
        seconds, found = timed(lambda: asyncio.run(find_contract(settings, contract.id)))
        steps.append(("look the contract up", seconds))
        seconds, _ = timed(lambda: asyncio.run(set_population(settings, found, resolved, True)))
        steps.append(("write the population records, one fence round", seconds))
        commands = [(f"`{' '.join(c)} CONTRACT --from-file FILE` (subprocess, end to end)",
                     cli(*c, contract.id, "--from-file", str(path),
                         out=Path(folder) / "out"))
                    for c in (("population", "add"), ("consent", "grant"),
                              ("consent", "withdraw"))]

    print(f"Enrolling {len(resolved):,} persons from a {size / 1e6:.1f} MB CSV export into "
          f"{contract.id} on {settings.kafka_bootstrap}, {settings.topic_partitions} "
          f"partitions per topic, acks=all (Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs).\n")
    print("| step | wall time s | persons/s |")
    print("|---|---:|---:|")
    for label, seconds in [*steps, *commands]:
        print(f"| {label} | {seconds:.2f} | {len(resolved) / seconds:,.0f} |")


if __name__ == "__main__":
    main()
