"""``circulation reconcile``: prove every event of a window has its outcomes, and every delivery
its decision and its event."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta
from typing import Annotated, Any

import typer
from aiokafka.errors import KafkaError
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from streams.cli.console import console, errors, fail, settings
from streams.kafka.admin import TopicError
from streams.ops.accounting.books import Reconciliation, reconcile
from streams.ops.accounting.reading import Ledger, read_ledger
from streams.ops.accounting.window import DEFAULT_WINDOW, parse_window

SHOWN_GAPS = 200
"""Gaps listed in the table (``--json`` lists them all)."""


def reconcile_command(
    since: Annotated[str, typer.Option(
        "--since", help="The window: records from this long ago (90s, 30m, 1h, 2d).")
    ] = DEFAULT_WINDOW,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON document.")] = False,
) -> None:
    """Check that every event has one outcome per contract concerning it (or a dead letter),
    every delivery its audit record and its event; list each gap; exit 1 on any."""
    try:
        window = parse_window(since)
    except ValueError as exc:
        fail(f"--since: {exc}", code=2)
    try:
        ledger = asyncio.run(_read(window))
    except (KafkaError, TopicError) as exc:
        fail(f"the cluster could not be read: {type(exc).__name__}", code=2)
    found = reconcile(ledger.books, ledger.window, ledger.concerns, ledger.read_at.date())
    if as_json:
        sys.stdout.write(json.dumps(document(found, ledger, since), sort_keys=True) + "\n")
    else:
        _print(found, ledger, since)
    if not found.clean:
        raise typer.Exit(1)


async def _read(window: timedelta) -> Ledger:
    """The ledger, with a spinner per kind of record on stderr when it is a terminal."""
    with Progress(SpinnerColumn(), TextColumn("reading {task.description}"),
                  TextColumn("{task.completed:,}"), TimeElapsedColumn(), console=errors,
                  transient=True, disable=not errors.is_terminal) as progress:
        tasks: dict[str, Any] = {}

        def advance(kind: str, count: int) -> None:
            if kind not in tasks:
                tasks[kind] = progress.add_task(kind, total=None)
            progress.advance(tasks[kind], count)

        return await read_ledger(settings(), window, advance)


def document(found: Reconciliation, ledger: Ledger, since: str) -> dict[str, Any]:
    """The stable JSON form of a reconciliation."""
    return {
        "window": {"since": since, "from": ledger.window.start.isoformat(),
                   "settled": ledger.window.settled.isoformat(),
                   "read_at": ledger.read_at.isoformat()},
        "clean": found.clean,
        "events": found.events, "in_flight": found.in_flight,
        "dead_lettered": found.dead_lettered, "republished": found.republished,
        "outcomes": dict(sorted(found.outcomes.items())), "deliveries": found.deliveries,
        "duplicates": {"outcomes": found.duplicate_outcomes,
                       "deliveries": found.duplicate_deliveries},
        "unjoined_deliveries": found.unjoined,
        "gaps": [gap.as_json() for gap in found.gaps],
    }


def _print(found: Reconciliation, ledger: Ledger, since: str) -> None:
    if found.gaps:
        gaps = Table("topic", "partition", "offset", "contract", "missing",
                     title=f"{len(found.gaps)} gap(s)", title_justify="left")
        for gap in found.gaps[:SHOWN_GAPS]:
            gaps.add_row(gap.topic, str(gap.partition), str(gap.offset), gap.contract or "-",
                         gap.missing)
        console.print(gaps)
        if len(found.gaps) > SHOWN_GAPS:
            console.print(f"… and {len(found.gaps) - SHOWN_GAPS} more (--json lists them all)")
    summary = Table("", "", title=f"reconciled since {ledger.window.start:%Y-%m-%d %H:%M:%S} "
                    f"UTC ({since})", title_justify="left", show_header=False)
    rows = [("events accounted", found.events), ("in flight (not judged)", found.in_flight),
            ("dead-lettered", found.dead_lettered), ("republished ids", found.republished),
            *((f"outcomes {'delivered' if verdict == 'delivered' else 'withheld: ' + verdict}",
               n) for verdict, n in sorted(found.outcomes.items())),
            ("deliveries", found.deliveries),
            ("duplicate outcomes (same verdict)", found.duplicate_outcomes),
            ("duplicate deliveries (same id)", found.duplicate_deliveries),
            ("deliveries audited without their id", found.unjoined),
            ("gaps", len(found.gaps))]
    for name, count in rows:
        summary.add_row(name, f"{count:,}")
    console.print(summary)
    console.print("[green]clean[/]" if found.clean else "[red]gaps found[/]")
