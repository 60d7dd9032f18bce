"""Ingesting a provider's file of events, resumable after a crash without duplicates.

A file of JSON lines (the lines ``circulation publish`` takes) or of CSV rows
(:mod:`connectors.csv_events`) goes through the publisher's own checks line by line. A refused
line goes to the rejected-lines file beside the input, with its number, the field at fault and
why, and the line itself: that file is the provider's, on the provider's disk, for the provider
to correct; nothing else (terminal, logs) ever shows a value.

Resuming rests on three things. Every event has an id that a rerun gives again: the file's own,
or one derived from the file's content hash and the line's number. The progress file
(:mod:`connectors.ingest_progress`) says up to which line everything is settled, and is written
only after Kafka acknowledged those lines. A crash can still fall between an acknowledgement and
the next progress write, so a rerun first reads the provider topics it wrote to from the offsets
recorded before the first write, and does not send again an event whose id and record key are
already there: the key too, since another file may reuse an id for someone else. Only the ids
of the unsettled lines are kept from that read. A provider's principal may only write to its
topics, so on a secured cluster that read is refused outright rather than taken as empty,
which would send every unsettled line again.

One run at a time per file: the lock ``PATH.lock`` is held for the whole run.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError
from rich.progress import Progress

from connectors import ingest_progress
from connectors.csv_events import CsvHeaderRefused, CsvMapping, CsvRow, numbered_rows
from connectors.durable_files import owner_only_appending, replace_durably
from connectors.event_files import PublishReport, event_lines, numbered_lines, parse_line
from connectors.ingest_progress import IngestProgress, rejected_path
from connectors.publisher import OutgoingEvent, Publisher, PublishRefused
from streams.kafka import clients
from streams.kafka.admin import TopicError, end_offsets, topic_partitions
from streams.settings import Settings

Format = Literal["jsonl", "csv"]
INGESTED_IDS = uuid.UUID("6b0f3f0e-8a7c-5d2e-9c41-3e2a7d5b9f10")
"""The UUID namespace of the ids derived for lines that bring none."""
SAVE_EVERY_LINES = 1000
SAVE_EVERY_SECONDS = 1.0
"""How often the progress is written while lines are acknowledged: what a rerun may have to
look up on the bus rather than skip by number, against an fsync per write."""
_ID_HEADER = "ce_id"
READ_BACK_SECONDS = 600
"""Longest a rerun reads the provider topics back before giving up with a clear error rather
than hang on a cluster that does not answer."""
UNREADABLE = ("resuming reads the provider topics back (from where the first run began) to send "
              "nothing twice, and they could not be read: a provider's principal may only write "
              "to them; rerun as a principal that may read them, e.g. the operator's")
WrittenEvent = tuple[str, bytes]
"""An event found on a provider topic: its id and its record key (the pseudonymised subject)."""


class IngestRefused(ValueError):
    """A file this command will not ingest as it stands; the message says what to do."""


@dataclass
class IngestReport(PublishReport):
    """What a run did, beside what earlier runs of the same file had settled."""

    settled_before: int = 0
    """Lines settled by earlier runs, not read again."""
    already_written: int = 0
    """Events an interrupted run had written, found on the bus and not sent again."""
    finished: bool = False
    """Every line is settled: a rerun does nothing."""
    finished_before: bool = False
    """An earlier run had finished the file: this one did nothing."""
    progress: IngestProgress | None = None


def derived_id(sha256: str, line: int) -> str:
    """The id of the event on ``line`` of the file of content hash ``sha256``, when the line
    brings none: the same on every run, different for every line of every file."""
    return str(uuid.uuid5(INGESTED_IDS, f"{sha256}:{line}"))


def already_finished(path: Path, file_format: Format, bus: str) -> IngestReport | None:
    """The report of a file an earlier run finished into ``bus``, from its progress file
    alone: a rerun of it needs neither the broker nor the registry. ``None`` when it is not
    finished."""
    recorded = ingest_progress.load(path)
    if recorded is None or not recorded.finished:
        return None
    refuse_other_input(path, file_format, recorded, ingest_progress.file_sha256(path), bus)
    return IngestReport(finished=True, finished_before=True, progress=recorded)


def refuse_other_input(path: Path, file_format: Format, recorded: IngestProgress,
                       sha256: str, bus: str) -> None:
    """Refuse to resume a progress file written for other content, another format or
    another bus."""
    where = ingest_progress.progress_path(path)
    if recorded.destination is not None and recorded.destination != bus:
        raise IngestRefused(f"{where} records ingesting {path.name} as {recorded.destination}, "
                            f"not as {bus}: remove {where} to ingest it into this bus from its "
                            f"first line")
    if recorded.sha256 != sha256:
        raise IngestRefused(f"{path} changed since {where} was written: remove {where} "
                            f"to ingest it as a new file (its events get new ids)")
    if recorded.format != file_format:
        raise IngestRefused(f"{where} was written reading {path} as {recorded.format}: "
                            f"rerun with --format {recorded.format}")


_Outcome = asyncio.Future[Any] | Literal["refused", "written"]


class FileIngest:
    """One run over one input file; :meth:`run` does it."""

    def __init__(self, path: Path, file_format: Format, publisher: Publisher,
                 progress_bar: Progress | None = None,
                 topics: ProviderTopics | None = None) -> None:
        self.path = path
        self.topics = topics or ProviderTopics(publisher.settings)
        self.format = file_format
        self.publisher = publisher
        self._bar = progress_bar
        self._pending: deque[tuple[int, _Outcome]] = deque()
        self._broken = False
        self._saved_at = (0, time.monotonic())
        self._state = IngestProgress(sha256="", format=file_format)
        self._report = IngestReport()

    async def run(self) -> IngestReport:
        """Ingest every line not settled yet; the report says what happened to each."""
        self._check_header()
        with ingest_progress.exclusive_run(self.path):
            return await self._run_alone()

    async def _run_alone(self) -> IngestReport:
        sha256 = ingest_progress.file_sha256(self.path)
        recorded = ingest_progress.load(self.path)
        bus = ingest_progress.destination(self.publisher.settings)
        if recorded is not None:
            refuse_other_input(self.path, self.format, recorded, sha256, bus)
        self._state = recorded or IngestProgress(sha256=sha256, format=self.format,
                                                 destination=bus)
        self._report.progress = self._state
        if self._state.finished:
            self._report.finished = self._report.finished_before = True
            return self._report
        self._report.settled_before = self._state.settled_through
        written = (await self.topics.written_ids(self._state.offsets, self._candidates())
                   if recorded else set())
        self._keep_settled_rejections()
        with owner_only_appending(rejected_path(self.path)) as rejected:
            try:
                await self._ingest(rejected, written)
            finally:
                self._settle()
                self._save(rejected)
        return self._report

    def _keep_settled_rejections(self) -> None:
        """Drop the rejections of unsettled lines an interrupted run wrote: they come again."""
        where = rejected_path(self.path)
        kept = [line for line in (where.read_text(encoding="utf-8").splitlines()
                                  if self._state.settled_through and where.exists() else [])
                if _line_number(line) <= self._state.settled_through]
        replace_durably(where, "".join(f"{line}\n" for line in kept))

    def _candidates(self) -> set[str]:
        """The ids of the unsettled lines: the only ones a rerun looks for on the bus."""
        with self.path.open("rb") as binary:
            return {self._event_id(number, event) for number, _, event in self._events(binary)
                    if not isinstance(event, PublishRefused)}

    def _event_id(self, number: int, event: dict[str, Any]) -> str:
        """The line's own id, or the one derived for it when it has none (or a null one)."""
        given = event.get("id")
        return derived_id(self._state.sha256, number) if given is None else str(given)

    async def _ingest(self, rejected: IO[str], written: set[WrittenEvent]) -> None:
        task = self._bar.add_task("ingesting", total=None) if self._bar else None
        with self.path.open("rb") as binary:
            for number, original, event in self._events(binary):
                try:
                    outgoing = self._prepare(number, event)
                except PublishRefused as exc:
                    self._refuse(rejected, number, original, exc)
                    continue
                if (outgoing.event_id, outgoing.key) in written:
                    self._report.already_written += 1
                    self._pending.append((number, "written"))
                else:
                    await self._send(rejected, number, outgoing)
                self._settle()
                self._save_now_and_then(rejected)
                if self._bar is not None and task is not None and number % 500 == 0:
                    self._bar.update(task, completed=number)
        for _, outcome in self._pending:
            if isinstance(outcome, asyncio.Future):
                await asyncio.wait([outcome])
        self._settle()
        self._report.finished = not self._broken and not self._pending

    def _events(self, binary: IO[bytes]
                ) -> Iterator[tuple[int, str | None, dict[str, Any] | PublishRefused]]:
        """Each unsettled line: its number, its text (for the rejected file) and its event,
        or the refusal of a line that is no event."""
        settled = self._state.settled_through
        if self.format == "jsonl":
            for number, line in numbered_lines(event_lines(binary)):
                if number > settled:
                    yield number, line.rstrip("\r\n") if line else None, _parsed(line)
            return
        rows = numbered_rows(event_lines(binary, newline=""))
        mapping = self._csv_mapping(next(rows, None))
        for number, row, text in rows:
            if number <= settled:
                continue
            if isinstance(row, PublishRefused):
                yield number, text, row
                continue
            try:
                yield number, text, mapping.event(row)
            except PublishRefused as exc:
                yield number, text, exc

    def _csv_mapping(self, header: CsvRow | None) -> CsvMapping:
        """The mapping of a CSV file's header row, or the refusal of the whole file."""
        if header is None or isinstance(header[1], PublishRefused):
            raise IngestRefused(f"{self.path} has no CSV header row (see the README for the "
                                f"columns)")
        try:
            return CsvMapping(self.publisher.catalog, header[1])
        except CsvHeaderRefused as exc:
            raise IngestRefused(f"{self.path}: {exc}") from None

    def _check_header(self) -> None:
        """Refuse a CSV file whose header cannot be read before anything is written beside it."""
        if self.format == "csv":
            with self.path.open("rb") as binary:
                self._csv_mapping(next(numbered_rows(event_lines(binary, newline="")), None))

    def _prepare(self, number: int, event: dict[str, Any] | PublishRefused) -> OutgoingEvent:
        if isinstance(event, PublishRefused):
            raise event
        if event.get("id") is None:
            event["id"] = self._event_id(number, event)
        return self.publisher.prepare(event)

    def _refuse(self, rejected: IO[str], number: int, original: str | None,
                refusal: PublishRefused) -> None:
        self._report.refused.append((number, str(refusal)))
        rejected.write(json.dumps({"line": number, "field": refusal.field,
                                   "reason": refusal.reason, "original": original}) + "\n")
        self._pending.append((number, "refused"))

    async def _send(self, rejected: IO[str], number: int, outgoing: OutgoingEvent) -> None:
        """Send, after recording the topic's end offsets if this is the file's first write to
        it: whatever any run writes there is after them."""
        if outgoing.topic not in self._state.offsets:
            self._state.offsets[outgoing.topic] = await self.topics.end_offsets(outgoing.topic)
            self._save(rejected)
        self._pending.append((number, await self.publisher.send(outgoing)))

    def _settle(self) -> None:
        """Move the settled line past every line at the head that is done, in file order; a
        line that failed to be written stops it there for good (a rerun sends it again)."""
        while self._pending:
            number, outcome = self._pending[0]
            if isinstance(outcome, asyncio.Future):
                if not outcome.done():
                    return
                self._count_written(number, outcome)
            elif not self._broken:
                self._state.published += outcome == "written"
                self._state.refused += outcome == "refused"
            self._pending.popleft()
            if not self._broken:
                self._state.settled_through = number

    def _count_written(self, number: int, outcome: asyncio.Future[Any]) -> None:
        error = outcome.exception() if not outcome.cancelled() else asyncio.CancelledError()
        if error is None:
            self._report.published += 1
            self._state.published += not self._broken
        else:  # a broker error: the line was valid but is not written
            self._report.failed.append((number, f"not written: {error!r}"))
            self._broken = True

    def _save_now_and_then(self, rejected: IO[str]) -> None:
        line, at = self._saved_at
        if (self._state.settled_through - line >= SAVE_EVERY_LINES
                or time.monotonic() - at >= SAVE_EVERY_SECONDS):
            self._save(rejected)

    def _save(self, rejected: IO[str]) -> None:
        """Write the progress, after the rejections it counts are on disk."""
        self._state.finished = self._report.finished
        rejected.flush()
        os.fsync(rejected.fileno())
        ingest_progress.save(self.path, self._state)
        self._saved_at = (self._state.settled_through, time.monotonic())


def _line_number(rejection: str) -> float:
    """The line a rejection is about; an infinite one for the part of a rejection a crash cut
    short (it belongs to an unsettled line: the settled ones were synced before the progress)."""
    try:
        return int(json.loads(rejection)["line"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


def _parsed(line: str | None) -> dict[str, Any] | PublishRefused:
    try:
        return parse_line(line)
    except PublishRefused as exc:
        return exc


class ProviderTopics:
    """What a run asks of the provider topics: where they end before its first write, and
    which event ids are on them from there."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """The end offset of each partition of ``topic`` (none when it does not exist yet)."""
        ends = await end_offsets(self.settings, [topic], missing_ok=True)
        return {tp.partition: end for tp, end in ends.items()}

    async def written_ids(self, offsets: dict[str, dict[int, int]], candidates: set[str]
                          ) -> set[WrittenEvent]:
        """The (id, key) of the events among ``candidates`` on the topics of ``offsets``, from
        those offsets to the end (a partition not recorded from its start). The key tells this
        file's event from another file's that reused its id for someone else."""
        if not offsets or not candidates:
            return set()
        try:
            async with asyncio.timeout(READ_BACK_SECONDS):
                return await self._read_back(offsets, candidates)
        except (TopicAuthorizationFailedError, KafkaTimeoutError, TopicError):
            raise IngestRefused(UNREADABLE) from None
        except TimeoutError:
            raise IngestRefused(f"the provider topics were not read back within "
                                f"{READ_BACK_SECONDS} s: {UNREADABLE}") from None

    async def _read_back(self, offsets: dict[str, dict[int, int]], candidates: set[str]
                         ) -> set[WrittenEvent]:
        partitions = await topic_partitions(self.settings, sorted(offsets), missing_ok=True)
        if {tp.topic for tp in partitions} < {topic for topic, ends in offsets.items() if ends}:
            raise IngestRefused(UNREADABLE)  # a topic written to cannot be gone: unauthorized
        if not partitions:
            return set()
        consumer = clients.consumer(self.settings, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            return await self._read(consumer, partitions, offsets, candidates)
        finally:
            await consumer.stop()

    @staticmethod
    async def _read(consumer: AIOKafkaConsumer, partitions: list[TopicPartition],
                    offsets: dict[str, dict[int, int]], candidates: set[str]
                    ) -> set[WrittenEvent]:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        found: set[WrittenEvent] = set()
        for tp in partitions:
            start = max(starts[tp], offsets[tp.topic].get(tp.partition, 0))
            if start < ends[tp]:
                consumer.seek(tp, start)
                await _read_ids(consumer, tp, ends[tp], candidates, found)
        return found


async def _read_ids(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int,
                    candidates: set[str], found: set[WrittenEvent]) -> None:
    while await consumer.position(tp) < end:
        batches = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
        for record in batches.get(tp, []):
            if record.offset < end:
                found.update((event_id, record.key or b"") for event_id in (
                    value.decode("utf-8", "replace") for key, value in record.headers
                    if key == _ID_HEADER) if event_id in candidates)
