"""``circulation generate DATASET``: realistic synthetic events for demos, tests, benchmarks."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from streams.cli.console import fail
from streams.dev.synthetic import generate as synthetic_events


def generate(
    dataset: Annotated[str, typer.Argument(help="Dataset id, e.g. quotient_familial.")],
    count: Annotated[int, typer.Option("--count", "-n", min=0, help="How many events.")] = 10,
    seed: Annotated[int, typer.Option(help="Same seed, same output.")] = 0,
    provider: Annotated[str | None, typer.Option(help="Fix the source provider.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="Write here instead of stdout.")] = None,
) -> None:
    """Write COUNT synthetic published events (CloudEvents JSON lines) with valid identifiers."""
    try:
        events = synthetic_events(dataset, count, seed, provider=provider)
    except ValueError as exc:
        fail(str(exc))
    sink = output.open("w", encoding="utf-8") if output else sys.stdout
    try:
        for event in events:
            sink.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
    finally:
        if output:
            sink.close()
