"""Per-event cost of the codec on every dataset of the catalog (latest version), no broker.

For each dataset, ``--count`` synthetic events are drawn with the project's generator, then each
stage is timed over the whole batch and reported per event, in microseconds:

- ``from_json``: validation of the published JSON ``data`` and conversion to an Avro datum;
- ``encode``: Avro binary encoding of the datum (fastavro, schemaless);
- ``decode``: Avro decoding back to a datum (writer schema = reader schema);
- ``to_json``: datum back to the JSON form.

Run: ``.venv/bin/python tests/benchmarks/catalog_codec.py [--count 5000] [--seed 1] [--repeat 3]``;
each stage is timed ``--repeat`` times and the best pass is kept.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from schemas.catalog import Catalog
from schemas.codec import decode, encode, from_json, to_json
from streams.dev.synthetic import generate


def _per_event_us(function: Callable[[Any], Any], inputs: Sequence[Any],
                  repeat: int) -> tuple[float, list[Any]]:
    """Run ``function`` on every input, ``repeat`` times; return (best µs per call, outputs)."""
    best = None
    outputs: list[Any] = []
    for _ in range(repeat):
        started = time.perf_counter_ns()
        outputs = [function(item) for item in inputs]
        elapsed = time.perf_counter_ns() - started
        best = elapsed if best is None else min(best, elapsed)
    assert best is not None
    return best / len(inputs) / 1000, outputs


def run(count: int, seed: int, repeat: int = 3) -> list[dict[str, Any]]:
    """One row of figures per dataset (the best of ``repeat`` passes for each stage)."""
    rows = []
    for dataset in Catalog.load().datasets():
        schema = dataset.latest.parsed
        documents = [event["data"] for event in generate(dataset.id, count, seed)]
        from_json(schema, documents[0])  # warm-up (imports, caches)
        t_from, datums = _per_event_us(partial(from_json, schema), documents, repeat)
        t_encode, payloads = _per_event_us(partial(encode, schema), datums, repeat)
        t_decode, decoded = _per_event_us(partial(decode, schema, None), payloads, repeat)
        t_to, back = _per_event_us(partial(to_json, schema), decoded, repeat)
        assert decoded == datums, f"{dataset.id}: decode(encode(x)) != x"
        assert all(b.items() >= d.items() for b, d in zip(back, documents, strict=True)), (
            f"{dataset.id}: to_json(from_json(x)) lost data"
        )
        rows.append({
            "dataset": f"{dataset.id} v{dataset.latest.version}",
            "bytes": sum(len(p) for p in payloads) / len(payloads),
            "from_json": t_from, "encode": t_encode, "decode": t_decode, "to_json": t_to,
        })
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table, with a total line."""
    stages = ("from_json", "encode", "decode", "to_json")
    lines = [
        "| dataset | Avro bytes/event | from_json µs | encode µs | decode µs | to_json µs "
        "| round trip µs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        total = sum(row[s] for s in stages)
        cells = " | ".join(f"{row[s]:.1f}" for s in stages)
        lines.append(f"| {row['dataset']} | {row['bytes']:.0f} | {cells} | {total:.1f} |")
    mean = {s: sum(r[s] for r in rows) / len(rows) for s in stages}
    cells = " | ".join(f"{mean[s]:.1f}" for s in stages)
    lines.append(f"| *mean of datasets* | | {cells} | {sum(mean.values()):.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=5000, help="events per dataset")
    parser.add_argument("--seed", type=int, default=1, help="generator seed")
    parser.add_argument("--repeat", type=int, default=3, help="passes per stage (best kept)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.repeat < 1:
        parser.error("--count and --repeat must be at least 1")
    rows = run(args.count, args.seed, args.repeat)
    print(f"Codec cost per event, {args.count} events per dataset, latest schema versions, "
          f"best of {args.repeat} passes (Python {platform.python_version()}, "
          f"{platform.machine()}).\n")
    print(table(rows))


if __name__ == "__main__":
    main()
