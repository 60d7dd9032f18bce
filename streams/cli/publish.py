"""``circulation publish FILE``: publish a JSON-lines file of events, refusing the bad lines."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from aiokafka.errors import KafkaError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from connectors.event_files import (
    PublishReport,
    event_lines,
    numbered_lines,
    parse_line,
)
from connectors.publisher import Publisher, PublishRefused
from schemas.registry import RegistryError
from streams.cli.console import console, errors, fail, settings
from streams.kafka.admin import TopicError
from streams.privacy.secret import SecretRefused

_REPORT_EVERY = 500


async def publish_stream(stream: IO[str], publisher: Publisher, progress: Progress | None = None,
                         ) -> PublishReport:
    """Publish every line of ``stream``; refused lines are reported and never sent."""
    report = PublishReport()
    pending: list[tuple[int, asyncio.Future[Any]]] = []
    task = progress.add_task("publishing", total=None) if progress else None
    for number, line in numbered_lines(stream):
        try:
            outgoing = publisher.prepare(parse_line(line))
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


def progress_bar() -> Progress:
    """The progress shown while a file is published (on a terminal only: rich hides it
    elsewhere), gone once done."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


def show_report(report: PublishReport, title: str,
                more: Iterable[tuple[str, str]] = ()) -> None:
    """The counts on stdout, then each refused or unwritten line on stderr: its number and
    the reason naming the field, never what the line held."""
    table = Table(title=title, show_header=False)
    table.add_row("published", f"[green]{report.published}[/]")
    table.add_row("refused", f"[red]{len(report.refused)}[/]" if report.refused else "0")
    if report.failed:
        table.add_row("failed to write", f"[red]{len(report.failed)}[/]")
    for name, value in more:
        table.add_row(name, value)
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
        progress = progress_bar()
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
    except (RegistryError, KafkaError, TopicError, OSError) as exc:
        fail(f"nothing more could be published: {exc}")
    show_report(report, f"publish {file}")
    if report.refused or report.failed or report.stopped:
        raise typer.Exit(1)
