"""``circulation publish FILE``: publish a JSON-lines file of events, refusing the bad lines."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from aiokafka.errors import KafkaError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from connectors.publisher import Publisher, PublishRefused
from schemas.registry import RegistryError
from streams.cli.console import console, errors, fail, settings
from streams.privacy.secret import SecretRefused

_REPORT_EVERY = 500
MAX_LINE_CHARS = 1_000_000
"""Longest line read, newline excluded: a published event is a few kilobytes, and a longer line
is refused unread rather than held in memory."""


@dataclass
class PublishReport:
    """What happened to each line: how many were published, which were refused and why."""

    published: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    stopped: tuple[int, str] | None = None
    """The line at which publishing stopped, and why: neither it nor any later line was sent."""


def _lines(stream: IO[str]) -> Iterator[tuple[int, str | None]]:
    """Numbered non-blank lines; ``None`` for a line longer than :data:`MAX_LINE_CHARS`, whose
    rest is skipped in bounded pieces."""
    number = 0
    while line := stream.readline(MAX_LINE_CHARS + 1):
        number += 1
        if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
            while (rest := stream.readline(MAX_LINE_CHARS)) and not rest.endswith("\n"):
                pass
            yield number, None
        elif line.strip():
            yield number, line


def event_lines(binary: IO[bytes]) -> IO[str]:
    """The text of a file of events, read so that bytes that are not UTF-8 refuse their own
    line (:func:`_parse`) rather than end the command: each such byte becomes a lone surrogate,
    which no UTF-8 text and no JSON escape can leave in a line as read."""
    return io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape")


def _parse(line: str | None) -> dict[str, Any]:
    """A JSON object, or a refusal of the whole line saying why (never quoting it)."""
    if line is None:
        raise PublishRefused("line", f"longer than {MAX_LINE_CHARS:,} characters "
                                     f"(a published event is a few kilobytes)")
    if not line.isascii():
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PublishRefused("line", f"not UTF-8 text (character {exc.start + 1})") from None
    try:
        event = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PublishRefused("line", f"not JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError:  # Python refuses to read integers beyond its digit limit
        raise PublishRefused("line", "a number has too many digits") from None
    except RecursionError:
        raise PublishRefused("line", "nested too deeply") from None
    if not isinstance(event, dict):
        raise PublishRefused("line", "a published event is a JSON object")
    return event


async def publish_stream(stream: IO[str], publisher: Publisher, progress: Progress | None = None,
                         ) -> PublishReport:
    """Publish every line of ``stream``; refused lines are reported and never sent."""
    report = PublishReport()
    pending: list[tuple[int, asyncio.Future[Any]]] = []
    task = progress.add_task("publishing", total=None) if progress else None
    for number, line in _lines(stream):
        try:
            outgoing = publisher.prepare(_parse(line))
        except PublishRefused as exc:
            report.refused.append((number, str(exc)))
            continue
        except RegistryError as exc:  # the lines before are sent: say exactly where it stopped
            report.stopped = (number, str(exc))
            break
        pending.append((number, await publisher.send(outgoing)))
        if progress is not None and task is not None and number % _REPORT_EVERY == 0:
            progress.update(task, completed=number)
    for number, future in pending:
        try:
            await future
            report.published += 1
        except Exception as exc:  # a broker error: the line was valid but not written
            report.failed.append((number, f"not written: {exc!r}"))
    return report


def _show(report: PublishReport, source: str) -> None:
    table = Table(title=f"publish {source}", show_header=False)
    table.add_row("published", f"[green]{report.published}[/]")
    table.add_row("refused", f"[red]{len(report.refused)}[/]" if report.refused else "0")
    if report.failed:
        table.add_row("failed to write", f"[red]{len(report.failed)}[/]")
    console.print(table)
    for number, reason in [*report.refused, *report.failed]:
        errors.print(f"line {number}: {reason}", highlight=False, markup=False, soft_wrap=True)
    if report.stopped is not None:
        number, reason = report.stopped
        errors.print(f"stopped at line {number}: neither it nor any later line was published: "
                     f"{reason}", highlight=False, markup=False, soft_wrap=True)


def publish(
    file: Annotated[str, typer.Argument(help="JSON lines of published events; - for stdin.")],
) -> None:
    """Validate, pseudonymise, encode and produce each event; refused lines never reach Kafka.

    Exits 1 when any line was refused or not written, after publishing all the valid ones.
    Every schema is looked up before the first line, so a registry that stops answering
    later does not stop the file; should one line still need it and fail (a subject not
    registered yet), publishing stops there and says at which line.
    """
    config = settings()
    if file != "-" and not Path(file).is_file():
        fail(f"no such file: {file}")
    try:
        edge = Publisher(config)
    except SecretRefused as exc:
        fail(str(exc))

    async def run() -> PublishReport:
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=True)
        async with edge as publisher:
            publisher.look_up_schemas()
            with progress:
                if file == "-":
                    return await publish_stream(event_lines(sys.stdin.buffer), publisher,
                                                progress)
                with Path(file).open("rb") as stream:
                    return await publish_stream(event_lines(stream), publisher, progress)

    try:
        report = asyncio.run(run())
    except (RegistryError, KafkaError, OSError) as exc:
        fail(f"nothing more could be published: {exc}")
    _show(report, file)
    if report.refused or report.failed or report.stopped:
        raise typer.Exit(1)
