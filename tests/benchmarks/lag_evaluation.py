"""Lag evaluation cost: 1,000 groups × 10 partitions, each with a full window of samples.

Feeds :class:`streams.ops.lag.model.LagWindows` synthetic rounds (a mix of groups that keep up, fall
behind, stall and stop, so that every rule of the evaluator runs), then times
:meth:`~streams.ops.lag.model.LagWindows.evaluate` — the part ``circulation lag --watch/--serve``
repeats at every sample — in CPU seconds (``time.process_time``), best of ``--repeat``. No broker.

Run: ``.venv/bin/python tests/benchmarks/lag_evaluation.py [--groups 1000 --partitions 10
--samples 10 --repeat 5]``. Prints a markdown table; asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from collections import Counter

from streams.ops.lag.model import GroupSample, LagWindows, PartitionOffsets


def rounds(groups: int, partitions: int, samples: int, seed: int) -> list[list[GroupSample]]:
    """``samples`` rounds of every group, 5 s apart; a group's behaviour is its index mod 4."""
    rng = random.Random(seed)
    out: list[list[GroupSample]] = []
    for step in range(samples):
        at = 1_000_000.0 + 5 * step
        sampled = []
        for group in range(groups):
            kind = group % 4
            topic = f"deliver.subscriber-{group:04d}.contract-{group:04d}"
            offsets = []
            for partition in range(partitions):
                end = 10_000 + 100 * step + rng.randint(0, 20)
                committed = {0: end - rng.randint(0, 3),           # keeps up
                             1: 9_000 + 20 * step,                   # falls behind
                             2: 9_500, 3: 9_500}[kind]                # stalls / stops
                offsets.append(PartitionOffsets(topic, partition, committed, end, 0,
                                                int((at - 60) * 1000), owned=kind != 3))
            sampled.append(GroupSample(f"subscriber.subscriber-{group:04d}.contract-{group:04d}",
                                       at, tuple(offsets), 0 if kind == 3 else 1,
                                       "Empty" if kind == 3 else "Stable"))
        out.append(sampled)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=10)
    parser.add_argument("--samples", type=int, default=10, help="observations per window")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    data = rounds(args.groups, args.partitions, args.samples, args.seed)
    windows = LagWindows(args.samples)
    began = time.process_time()
    for sampled in data:
        windows.observe(sampled)
    observe_cpu = time.process_time() - began
    best = float("inf")
    for _ in range(args.repeat):
        began = time.process_time()
        report = windows.evaluate()
        best = min(best, time.process_time() - began)
    statuses = Counter(group.status.name for group in report)
    partitions = args.groups * args.partitions
    print(f"Lag evaluation — {platform.python_implementation()} {platform.python_version()}, "
          f"{args.groups} groups × {args.partitions} partitions × {args.samples} samples "
          f"({partitions * args.samples:,} observations)\n")
    print("| what | CPU seconds | per partition |")
    print("|---|---:|---:|")
    print(f"| feed {args.samples} rounds into the windows | {observe_cpu:.3f} | "
          f"{observe_cpu / partitions * 1e6:.1f} µs |")
    print(f"| evaluate every group (best of {args.repeat}) | {best:.3f} | "
          f"{best / partitions * 1e6:.1f} µs |")
    print(f"\nstatuses: {dict(sorted(statuses.items()))}")


if __name__ == "__main__":
    main()
