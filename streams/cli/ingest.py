"""``circulation ingest-file PATH``: ingest a provider's file of events, resumable after a crash."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from aiokafka.errors import KafkaError

from connectors.file_ingest import (
    FileIngest,
    Format,
    IngestRefused,
    IngestReport,
    already_finished,
)
from connectors.ingest_progress import (
    AnotherRun,
    ProgressUnreadable,
    destination,
    progress_path,
    rejected_path,
)
from connectors.publisher import Publisher
from schemas.registry import RegistryError
from streams.cli.console import console, fail, settings
from streams.cli.publish import progress_bar, show_report
from streams.kafka.admin import TopicError
from streams.privacy.secret import SecretRefused

_BY_SUFFIX: dict[str, Format] = {".jsonl": "jsonl", ".csv": "csv"}
"""The suffixes that say a format; not ``.json``, which is as often one pretty-printed array
(every line of it refused) as one event a line."""


class FileFormat(StrEnum):
    """The formats a provider's file may have."""

    jsonl = "jsonl"
    csv = "csv"


def file_format(path: Path, given: FileFormat | None) -> Format | None:
    """The format named, else the one the file's suffix says; ``None`` when it says none."""
    if given is not None:
        return _BY_SUFFIX[f".{given.value}"]
    return _BY_SUFFIX.get(path.suffix.lower())


def ingest_file(
    path: Annotated[Path, typer.Argument(help="The provider's file of events.")],
    file_format_option: Annotated[FileFormat | None, typer.Option(
        "--format", help="jsonl (the lines publish takes) or csv (a header row, then one event "
                         "a row); by default from the file's suffix (.jsonl or .csv).")] = None,
) -> None:
    """Validate, pseudonymise and produce each event of a file, as publish does; refused lines
    go to PATH.rejected.jsonl, and PATH.progress lets a rerun resume where Kafka's
    acknowledgements stopped, sending nothing twice.

    Exits 1 when any line was refused or not written, after publishing all the valid ones; a
    rerun of a finished file does nothing and exits as the finished run did.
    """
    config = settings()
    if not path.is_file():
        fail(f"no such file: {path}")
    chosen = file_format(path, file_format_option)
    if chosen is None:
        fail(f"cannot tell the format of {path.name} from its suffix: say --format jsonl or csv")
    try:
        finished = already_finished(path, chosen, destination(config))
    except (IngestRefused, ProgressUnreadable) as exc:
        fail(str(exc))
    if finished is not None:
        _tell(path, finished)
        return
    try:
        edge = Publisher(config)
    except SecretRefused as exc:
        fail(str(exc))

    async def run() -> IngestReport:
        async with edge as publisher:
            publisher.look_up_schemas()  # as publish: the registry needed at the start only
            with progress_bar() as bar:
                return await FileIngest(path, chosen, publisher, bar).run()

    try:
        report = asyncio.run(run())
    except (IngestRefused, ProgressUnreadable, AnotherRun) as exc:
        fail(str(exc))
    except (RegistryError, KafkaError, TopicError, OSError) as exc:
        where = progress_path(path)
        resume = f" (rerun to resume from {where})" if where.exists() else ""
        fail(f"nothing more could be ingested{resume}: {exc}")
    _tell(path, report)


def _tell(path: Path, report: IngestReport) -> None:
    recorded = report.progress
    if recorded is not None and report.finished_before:
        console.print(f"{path} was ingested already ({recorded.published} published, "
                      f"{recorded.refused} refused): nothing to do", highlight=False)
    else:
        show_report(report, f"ingest-file {path}", [
            ("already written", str(report.already_written)),
            ("lines settled before", str(report.settled_before)),
        ])
    if recorded is not None and recorded.refused:
        console.print(f"refused lines: {rejected_path(path)}", highlight=False)
    if recorded is None or recorded.refused or report.failed or not report.finished:
        raise typer.Exit(1)
