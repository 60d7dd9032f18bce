"""Per-event cost of the NIR scan on every dataset of the catalog, no broker.

For each dataset, ``--count`` synthetic events are drawn with the project's generator; every
string of each published event but its subject (the id, source, type, time and every string of
``data``) is then passed to :func:`schemas.nir_detection.contains_nir`, as the router does with
every string of every routed event, and the whole event to
:func:`schemas.nir_detection.nir_locations`, as the publisher does. Reported per event, in
microseconds, best of ``--repeat`` passes, with the number of strings scanned per event.

Run: ``.venv/bin/python tests/benchmarks/nir_scan.py [--count 5000] [--seed 1] [--repeat 3]``.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from schemas.nir_detection import contains_nir, nir_locations
from streams.dev.synthetic import DATASETS, generate


def _strings(value: Any) -> Iterator[str]:
    """Every string of a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _best_us(function: Callable[[Any], Any], inputs: Sequence[Any], repeat: int) -> float:
    """Best pass over ``inputs``, in µs per input."""
    best = None
    for _ in range(repeat):
        started = time.perf_counter_ns()
        for item in inputs:
            function(item)
        elapsed = time.perf_counter_ns() - started
        best = elapsed if best is None else min(best, elapsed)
    assert best is not None
    return best / 1000 / len(inputs)


def _scan_strings(strings: list[str]) -> bool:
    return any(contains_nir(text) for text in strings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"Python {platform.python_version()}, {args.count} events per dataset, "
          f"best of {args.repeat}\n")
    print("| dataset | strings/event | contains_nir on each, µs/event | nir_locations, µs/event |")
    print("|---|---:|---:|---:|")
    for dataset_id in sorted(DATASETS):
        events = [json.loads(json.dumps(e)) for e in generate(dataset_id, args.count, args.seed)]
        for event in events:
            del event["subject"]
        strings = [list(_strings(event)) for event in events]
        per_string = _best_us(_scan_strings, strings, args.repeat)
        walked = _best_us(nir_locations, events, args.repeat)
        count = sum(map(len, strings)) / len(strings)
        print(f"| {dataset_id} | {count:.1f} | {per_string:.2f} | {walked:.2f} |")


if __name__ == "__main__":
    main()
