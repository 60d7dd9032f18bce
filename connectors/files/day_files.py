"""A contract's deliveries on disk: one JSON-lines file per UTC day, replaced whole.

``D/<contract>/<YYYY-MM-DD>.jsonl`` holds, one CloudEvents JSON object a line, the contract's
deliveries whose ``time`` falls on that UTC day. The day is the delivery's own ``time``, not
the moment it was read: the bus sets it to the event's day, so a file holds what happened on a
day wherever the sink was, a replay or a late start lands each delivery in the same file, and
an administration's batch job finds a day's changes under that day's name.

**Atomic.** A reader (the administration's batch job) must never see a half-written line or
file, so a file is never appended to in place: each flush writes the day's old content and the
new lines aside, syncs them, and renames the result over the old file
(:func:`~connectors.durable_files.replace_durably_by`); a reader sees the file before or after,
whole. The cost is a copy of the day's file per flush, so the sink flushes at most every
:data:`~connectors.files.sink.FLUSH_INTERVAL_S` rather than per record fetched: the copy is
sequential I/O in the kernel's page cache, and a day's file of one contract stays small next to
the memory of the machine that keeps it. Appending would cost less and leave a torn last line
for any reader that came during a write or after a crash.

**Once.** Each delivery's ``id`` (the subscriber's id for the event) is unique and kept by a
replay, so a line whose id the day's file already holds is not written again: after a crash
between a flush and the commit of its offsets, the deliveries read again are found there.

**Owner-only.** Deliveries are personal data: folders are 0700, files 0600, from their
creation.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any

from connectors.deliveries import compact_json
from connectors.durable_files import ASIDE_SUFFIX, replace_durably_by, sync_directory
from streams.routing.delivery import expiry_day

SUFFIX = ".jsonl"
_DAY_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})\.jsonl")
IDS_KEPT_DAYS = 8
"""Days whose delivery ids are kept in memory; another day's are read from its file again
when a delivery of it arrives (a late one: most arrive on the day of their event)."""


class UnreadableDayFile(ValueError):
    """A file under the contract's folder that this sink did not write as it is: the message
    names the file and the line, never their content."""


def contract_folder(root: Path, contract_id: str) -> Path:
    """Where the files of ``contract_id`` are kept under the sink's folder ``root``."""
    return root / contract_id


def day_file(folder: Path, day: date) -> Path:
    """The file of ``day`` in a contract's ``folder``."""
    return folder / f"{day.isoformat()}{SUFFIX}"


def day_of(path: Path) -> date | None:
    """The day a file's name says, or None for a name that is not a day's file."""
    match = _DAY_NAME.fullmatch(path.name)
    if match is None:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


class DeliveryRefused(ValueError):
    """A delivery the sink cannot file: ``field`` names the attribute, ``reason`` what is
    wrong, never its value (a dead letter says both)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def instant(text: object, attribute: str) -> datetime:
    """An RFC 3339 instant of a delivery, aware and in UTC; :class:`DeliveryRefused` naming
    the attribute."""
    if not isinstance(text, str):
        raise DeliveryRefused(attribute, "missing or not a text")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise DeliveryRefused(attribute, "not an RFC 3339 instant") from None
    if parsed.tzinfo is None:
        raise DeliveryRefused(attribute, "an instant without its offset")
    return parsed.astimezone(UTC)


@dataclass
class Line:
    """One delivery as a line of its day's file, with what the sink decides on."""

    id: str
    day: date
    expires: datetime
    text: str

    @classmethod
    def of(cls, event: Mapping[str, Any], retention: timedelta, text: str | None = None,
           ) -> Line:
        """The line of the delivery ``event`` (CloudEvents JSON; ``text``: as read from a
        file). Its expiry is its ``expiresat``; a record that carries none (an erasure notice)
        expires as a delivery made at its ``time`` would under ``retention``.
        :class:`DeliveryRefused` naming the attribute at fault."""
        if not isinstance(event.get("id"), str):
            raise DeliveryRefused("id", "missing or not a text")
        at = instant(event.get("time"), "time")
        if event.get("expiresat") is None:
            expires = datetime.combine(expiry_day(at, retention), time(), UTC)
        else:
            expires = instant(event["expiresat"], "expiresat")
        return cls(event["id"], at.date(), expires,
                   compact_json(dict(event)) if text is None else text)


@dataclass
class DaySummary:
    """What a day's file holds, for deciding on it without reading it again."""

    deliveries: int
    expires: datetime
    """The latest expiry of its deliveries: the file may be kept until then, and no longer."""

    def expired(self, now: datetime) -> bool:
        """Whether every delivery in the file has expired at ``now``."""
        return self.expires <= now

    def add(self, line: Line) -> None:
        self.deliveries += 1
        self.expires = max(self.expires, line.expires)


class DayFiles:
    """The day files of one contract's folder: what each holds, and new lines added to them
    once, atomically and durably."""

    def __init__(self, folder: Path, retention: timedelta) -> None:
        self.folder = folder
        self.retention = retention
        self.summaries: dict[date, DaySummary] = {}
        self._ids: OrderedDict[date, set[str]] = OrderedDict()

    def open(self) -> None:
        """Make the folder (owner-only), remove what a crash left aside, and read what each
        day's file holds."""
        self.folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.folder, 0o700)
        for aside in self.folder.glob(f".*{ASIDE_SUFFIX}"):
            aside.unlink(missing_ok=True)
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            day = day_of(path)
            if day is not None:
                self._read(day)

    def holds(self, day: date, delivery_id: str) -> bool:
        """Whether the file of ``day`` already holds the delivery ``delivery_id``."""
        return delivery_id in self._ids_of(day)

    def add(self, lines: Mapping[date, list[Line]]) -> int:
        """Add each day's ``lines`` to its file, but those it already holds; each file replaced
        whole (see the module's doc). Returns how many lines were written."""
        written = 0
        for day, given in sorted(lines.items()):
            ids = self._ids_of(day)
            new = [line for line in _first_of_each(given) if line.id not in ids]
            if new:
                self._write(day, new)
                ids.update(line.id for line in new)
                written += len(new)
        return written

    def delete(self, day: date) -> None:
        """Remove the file of ``day``, durably."""
        day_file(self.folder, day).unlink(missing_ok=True)
        sync_directory(self.folder)
        self.summaries.pop(day, None)
        self._ids.pop(day, None)

    def _write(self, day: date, new: list[Line]) -> None:
        path = day_file(self.folder, day)

        def write(out: IO[bytes]) -> None:
            if path.exists():
                with path.open("rb") as old:
                    shutil.copyfileobj(old, out)
            out.writelines(f"{line.text}\n".encode() for line in new)

        replace_durably_by(path, write)
        summary = self.summaries.get(day)
        if summary is None:
            summary = self.summaries[day] = DaySummary(0, new[0].expires)
        for line in new:
            summary.add(line)

    def _ids_of(self, day: date) -> set[str]:
        """The ids the file of ``day`` holds (read from it when not in memory)."""
        ids = self._ids.get(day)
        if ids is None:
            ids = self._ids[day] = self._read(day)
        self._ids.move_to_end(day)
        while len(self._ids) > IDS_KEPT_DAYS:
            self._ids.popitem(last=False)
        return ids

    def _read(self, day: date) -> set[str]:
        """Read the file of ``day``: its summary, kept, and its ids, returned."""
        path = day_file(self.folder, day)
        ids: set[str] = set()
        summary: DaySummary | None = None
        try:
            with path.open("rb") as stream:
                for number, raw in enumerate(stream, start=1):
                    line = _read_line(path, number, raw, self.retention)
                    ids.add(line.id)
                    if summary is None:
                        summary = DaySummary(0, line.expires)
                    summary.add(line)
        except FileNotFoundError:
            pass
        if summary is None:
            self.summaries.pop(day, None)
        else:
            self.summaries[day] = summary
        return ids


def _first_of_each(lines: Iterable[Line]) -> list[Line]:
    """``lines`` in their order, each id once (a batch may hold a delivery twice)."""
    seen: set[str] = set()
    kept = []
    for line in lines:
        if line.id not in seen:
            seen.add(line.id)
            kept.append(line)
    return kept


def _read_line(path: Path, number: int, raw: bytes, retention: timedelta) -> Line:
    """A line of a day's file as the sink wrote it; :class:`UnreadableDayFile` otherwise."""
    try:
        text = raw.decode().rstrip("\n")
        event: Any = json.loads(text)
    except ValueError:  # its message may quote the line
        raise _unreadable(path, number, "not a JSON line") from None
    if not isinstance(event, dict):
        raise _unreadable(path, number, "not a JSON object")
    try:
        return Line.of(event, retention, text)
    except ValueError as exc:
        raise _unreadable(path, number, str(exc)) from None


def _unreadable(path: Path, number: int, reason: str) -> UnreadableDayFile:
    return UnreadableDayFile(f"{path} line {number}: {reason}; the sink adds only to files it "
                             "can read back: move this file out of its folder")
