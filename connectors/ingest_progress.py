"""The progress file of an ingested file: what Kafka acknowledged, so that a rerun resumes.

It sits beside the input (``PATH.progress``) and is replaced atomically (written aside, synced,
renamed over), so that a crash leaves the previous state or the new one, never half of one. It
records the input's content hash (a changed input is another file), the last line up to which
every line is settled (published and acknowledged, or refused), and for each provider topic the
run wrote to, the end offsets before its first write: a rerun reads those topics from there to
learn which events of the unsettled lines Kafka had already acknowledged when the process
stopped. The offsets are those of the first run and are kept by every rerun, since the lines
any earlier run wrote are after them. It names the bus written to, so that it is never resumed
against another. It holds no value of the input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.durable_files import Locked, exclusive_lock, replace_durably
from streams.settings import Settings

PROGRESS_SUFFIX = ".progress"
REJECTED_SUFFIX = ".rejected.jsonl"
LOCK_SUFFIX = ".lock"


class AnotherRun(ValueError):
    """Another run is ingesting the same file; the message says which lock it holds."""


class ProgressUnreadable(ValueError):
    """A progress file that is not one this command wrote; the message says what to do."""


class IngestProgress(BaseModel):
    """How far an input file has been ingested."""

    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(description="The input's content hash.")
    format: str = Field(description="jsonl or csv.")
    settled_through: int = Field(default=0, ge=0, description=(
        "Every line up to this one is published and acknowledged, or refused."))
    published: int = Field(default=0, ge=0, description="Events published up to that line.")
    refused: int = Field(default=0, ge=0, description="Lines refused up to that line.")
    offsets: dict[str, dict[int, int]] = Field(default_factory=dict, description=(
        "Per provider topic, the end offset of each partition before the first write to it; "
        "a partition not listed was created later, and is read from its start."))
    finished: bool = False
    destination: str | None = Field(default=None, description=(
        "The bus the lines were written to: its bootstrap servers (see destination())."))


def destination(settings: Settings) -> str:
    """Where a run writes, as its settings say: the bootstrap servers.

    Taken from the settings alone, so that a rerun of a finished file still needs no broker.
    A progress file says what one bus acknowledged: resumed against another (a staging
    cluster, then production), it would skip lines that bus never received. The principal is
    left out: on a secured bus a provider may not read its topics back, and the operator
    reruns its interrupted file."""
    return settings.kafka_bootstrap


def progress_path(path: Path) -> Path:
    """Where the progress of ``path`` is kept."""
    return path.with_name(path.name + PROGRESS_SUFFIX)


def rejected_path(path: Path) -> Path:
    """Where the refused lines of ``path`` are written."""
    return path.with_name(path.name + REJECTED_SUFFIX)


def file_sha256(path: Path) -> str:
    """The content hash of ``path``, read in pieces."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def load(path: Path) -> IngestProgress | None:
    """The recorded progress of the input ``path``, or ``None`` when it has none."""
    where = progress_path(path)
    try:
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return IngestProgress.model_validate_json(text)
    except ValidationError:
        raise ProgressUnreadable(f"{where} is not a progress file of ingest-file: remove it to "
                                 f"ingest {path.name} from its first line") from None


def save(path: Path, progress: IngestProgress) -> None:
    """Replace the progress of the input ``path`` atomically and durably."""
    replace_durably(progress_path(path), progress.model_dump_json())


@contextmanager
def exclusive_run(path: Path) -> Iterator[None]:
    """Hold the lock of the input ``path`` (``PATH.lock``) for a whole run: two runs at once
    would each send every line the other has not settled yet."""
    where = path.with_name(path.name + LOCK_SUFFIX)
    try:
        with exclusive_lock(where, f"another run of ingest-file holds {where}: let it end, "
                                   "then rerun"):
            yield
    except Locked as exc:
        raise AnotherRun(str(exc)) from None
