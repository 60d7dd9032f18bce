"""``circulation dlq``: list the dead letters by reason, and have the workers replay them."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from aiokafka.errors import KafkaError
from rich.table import Table

from streams.cli.console import console, fail, settings
from streams.kafka import clients
from streams.kafka.admin import TopicError
from streams.kafka.topics import PROVIDER_PREFIX
from streams.ops.dead_letter_index import (
    DeadLetter,
    Offsets,
    by_reason,
    failed_again,
    letter_ends,
    parse_since,
    read_letters,
    selected,
)
from streams.ops.replay_progress import wait_for_routers
from streams.routing.replay_markers import markers_for, write_markers
from streams.settings import Settings
from streams.state.fences import Positions

app = typer.Typer(
    help="Dead letters (bus.dlq): records the workers could not route. A letter's reason is "
         "its error's type and the field it names, as Type:field (UnroutableRecord:key, "
         "DecodeError).",
    no_args_is_help=True)

DEFAULT_WAIT_S = 120.0
"""How long ``dlq replay`` waits for the workers to route what it asked, unless told."""

ReasonOption = Annotated[str | None, typer.Option(
    "--reason", help="Only the letters of this reason, as listed (Type:field).")]


@app.command(name="list")
def list_letters(reason: ReasonOption = None,
                 as_json: Annotated[bool, typer.Option("--json",
                                                       help="Print a JSON document.")] = False,
                 ) -> None:
    """Group the dead letters by reason: how many, from which topics, first and last failure.
    Letters hold no value of their records, so none is printed."""
    groups = by_reason(selected(_letters(settings()), reason, None))
    if as_json:
        document = {"reasons": [g.as_json() for g in groups],
                    "letters": sum(g.count for g in groups)}
        sys.stdout.write(json.dumps(document, sort_keys=True) + "\n")
        return
    if not groups:
        console.print("no dead letter" + (" of this reason" if reason else ""))
        return
    table = Table("reason", "letters", "origin topics", "first failed", "last failed",
                  "description")
    for g in groups:
        table.add_row(g.reason, f"{g.count:,}", "\n".join(sorted(g.topics)),
                      _shown(g.first_failed_at), _shown(g.last_failed_at), g.description)
    console.print(table)


@app.command()
def replay(reason: ReasonOption = None,
           since: Annotated[str | None, typer.Option(
               "--since", help="Only letters that failed since then: a duration back from now "
                               "(90s, 30m, 1h, 2d) or a date or instant (2026-12-01, "
                               "2026-12-01T08:00:00+00:00).")] = None,
           wait: Annotated[float, typer.Option(
               "--wait", min=0, help="Seconds to wait for the workers to route the replayed "
                                     "records (0: do not wait).")] = DEFAULT_WAIT_S,
           ) -> None:
    """Ask the workers to route the dead-lettered records again, once their cause is fixed.

    One replay marker per origin partition (and per 500 records) is written on that
    partition; the worker owning it reads the records again by their coordinates and routes
    them as replays: same event ids, same delivery ids, audited as replays. A record that
    fails again becomes a new dead letter. Waits until the workers routed every marker, then
    says how many failed again; exit 1 when any did, or when the wait ran out."""
    try:
        start = parse_since(since, datetime.now(UTC)) if since is not None else None
    except ValueError as exc:
        fail(f"--since: {exc}", code=2)
    current = settings()
    letters = [letter for letter in selected(_letters(current), reason, start)
               if letter.origin_topic.startswith(PROVIDER_PREFIX)]
    if not letters:
        console.print("no dead letter to replay" + (" of this reason" if reason else ""))
        return
    markers = markers_for(letter.origin for letter in letters)
    try:
        asked_at = asyncio.run(letter_ends(current))
        positions = asyncio.run(_write(current, markers))
    except (KafkaError, TopicError) as exc:
        fail(f"the replay markers could not be written: {type(exc).__name__}", code=1)
    console.print(f"asked a replay of {len(letters):,} record(s) in "
                  f"{sum(map(len, markers.values()))} marker(s) on {len(markers)} "
                  "partition(s)")
    if wait > 0:
        _report(current, letters, positions, asked_at, wait)


def _report(current: Settings, letters: list[DeadLetter], positions: Positions,
            asked_at: Offsets, wait: float) -> None:
    """Wait for the workers to pass every marker, then say how many replayed records failed
    again (exit 1 when any did, or when they have not passed every marker in time)."""
    try:
        behind = asyncio.run(wait_for_routers(current, positions, wait))
        again = failed_again(asyncio.run(read_letters(current, asked_at)), letters)
    except (KafkaError, TopicError) as exc:
        fail(f"the replay's progress could not be read: {type(exc).__name__}", code=1)
    if behind:
        fail(f"the workers have not reached the markers of {len(behind)} partition(s) after "
             f"{wait:g}s: they route them when they do; `circulation lag` shows how far behind "
             "they are, `circulation dlq list` what fails again", code=1)
    if again:
        reasons = ", ".join(g.reason for g in by_reason(again))
        fail(f"routed again: {len(letters) - len(again):,} record(s); failed again: "
             f"{len(again):,} ({reasons}), see `circulation dlq list`", code=1)
    console.print(f"routed again: {len(letters):,} record(s), none failed again; their "
                  "audit records are marked replay")


def _letters(current: Settings) -> list[DeadLetter]:
    try:
        return asyncio.run(read_letters(current))
    except (KafkaError, TopicError) as exc:
        fail(f"the dead letters could not be read: {type(exc).__name__}", code=2)


async def _write(current: Settings, markers: dict[tuple[str, int], list[bytes]]) -> Positions:
    producer = clients.producer(current)
    await producer.start()
    try:
        return await write_markers(producer, markers)
    finally:
        await producer.stop()


def _shown(at: datetime | None) -> str:
    return "-" if at is None else f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
