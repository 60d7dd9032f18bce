"""CSV files of events: a header row, then one event per row, for providers that export tables.

The header names the columns. ``source``, ``type`` and ``subject`` are the event's attributes of
the same names and are required; ``id`` and ``time`` are optional attributes. Every other
column is a field of the row's dataset's ``data`` (its latest schema in the catalog), and its
cell is read as that field's Avro type says: ``true``/``false`` for a boolean, a decimal integer
for an int or long, a decimal number for a float or double, JSON for an array, a map or a
record, and the text itself for a string, an enum, a date, an instant or bytes (base64). An
empty cell leaves the field out, so that it takes its default (``null`` for an optional field)
or is refused as missing. The event then goes through the publisher's own checks, as a JSON
line would.
"""

from __future__ import annotations

import csv
import json
import re
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

from connectors.event_files import MAX_LINE_CHARS, physical_lines, refuse_non_utf8
from connectors.publisher import PublishRefused, provider_topic
from schemas.catalog import Catalog
from schemas.nir_detection import contains_nir
from streams.state.subject_lists import header_delimiter

ATTRIBUTES = ("source", "type", "subject", "id", "time")
"""Columns that are the event's attributes; every other one is a field of its data."""
REQUIRED = ("source", "type", "subject")
DELIMITERS = (",", ";", "\t")
"""Cell separators, in the order tried on the header: the one under which it names a
``source`` column is the file's."""
MAX_ROW_LINES = 10
"""Most lines one row may span (a quoted cell holding line breaks): more is a stray quote."""
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
_PRIMITIVE_KINDS = {"boolean": "boolean", "int": "integer", "long": "integer",
                    "float": "number", "double": "number"}
_JSON_KINDS = ("record", "array", "map")


class CsvHeaderRefused(ValueError):
    """A header the file cannot be read with; the message names the column, never a cell."""


CsvRow = tuple[int, list[str] | PublishRefused, str | None]
"""A row: the number of the line it starts on, its cells or its refusal, and its raw text (none
for a line too long to read)."""


def numbered_rows(stream: IO[str]) -> Iterator[CsvRow]:
    """Each non-blank row, the header row included, or the refusal of the line(s) that are no
    CSV row. The delimiter is the header's: a comma, a semicolon (French spreadsheets) or a tab.

    A row is read within bounds, so that a stray quote refuses its own line and no other: a
    quoted cell may span at most :data:`MAX_ROW_LINES` lines and :data:`MAX_LINE_CHARS`
    characters; past them, the line that opened it is refused and reading goes on at the next
    one. The csv module alone would swallow every following line into that one cell."""
    lines = _Lookahead(physical_lines(stream))
    delimiter: str | None = None
    for number, line in lines:
        if line is None:
            yield number, _too_long(), None
        elif line.strip():
            delimiter = delimiter or _delimiter(line)
            yield _row(number, _record(line, lines), delimiter)


def _delimiter(header: str) -> str:
    found = header_delimiter(header, REQUIRED[0], DELIMITERS)
    return found[0] if found else DELIMITERS[0]


def _record(first: str, lines: _Lookahead) -> list[str]:
    """The physical lines of the row that starts with ``first``: more than one only when a
    quoted cell is left open at a line's end and a later line within bounds closes it."""
    record, size = [first], len(first)
    while "".join(record).count('"') % 2:
        following = lines.peek(len(record))
        if following is None or len(record) >= MAX_ROW_LINES or size > MAX_LINE_CHARS:
            return [first]
        record.append(following)
        size += len(following)
    if size > MAX_LINE_CHARS:
        return [first]
    lines.skip(len(record) - 1)
    return record


def _row(number: int, record: list[str], delimiter: str) -> CsvRow:
    text = "".join(record).rstrip("\r\n")
    if "".join(record).count('"') % 2:
        return number, PublishRefused("line", f"a quoted cell is not closed within "
                                              f"{MAX_ROW_LINES} lines"), text
    try:  # the csv module's messages describe the syntax, not cells
        rows = list(csv.reader(record, delimiter=delimiter, strict=True))
    except csv.Error as exc:
        return number, PublishRefused("line", f"not CSV ({exc})"), text
    if len(rows) != 1:
        return number, PublishRefused("line", "not CSV (not one row)"), text
    return number, rows[0], text


def _too_long() -> PublishRefused:
    return PublishRefused("line", f"longer than {MAX_LINE_CHARS:,} characters")


class _Lookahead:
    """Physical lines, read ahead without being consumed while a row looks for its end."""

    def __init__(self, lines: Iterator[tuple[int, str | None]]) -> None:
        self._lines = lines
        self._ahead: deque[tuple[int, str | None]] = deque()

    def __iter__(self) -> Iterator[tuple[int, str | None]]:
        while self._ahead or self._fill(1):
            yield self._ahead.popleft()

    def peek(self, place: int) -> str | None:
        """The text of the ``place``-th line ahead (1 is the next); None past the end or for
        a line too long to read."""
        return self._ahead[place - 1][1] if self._fill(place) else None

    def skip(self, count: int) -> None:
        for _ in range(count):
            self._ahead.popleft()

    def _fill(self, count: int) -> bool:
        while len(self._ahead) < count:
            line = next(self._lines, None)
            if line is None:
                return False
            self._ahead.append(line)
        return True


class CsvMapping:
    """Turns the rows of one file into published events, as its header says."""

    def __init__(self, catalog: Catalog, header: Sequence[str]) -> None:
        self.catalog = catalog
        self.columns = [_column(name, place) for place, name in enumerate(header, start=1)]
        for place, name in enumerate(self.columns, start=1):
            if name in self.columns[:place - 1]:
                raise CsvHeaderRefused(f"column {place} ({name}) appears twice in the header")
        missing = [name for name in REQUIRED if name not in self.columns]
        if missing:
            raise CsvHeaderRefused(f"the header has no column {', '.join(missing)} "
                                   f"(required: {', '.join(REQUIRED)})")

    def event(self, row: Sequence[str]) -> dict[str, Any]:
        """The published event of ``row``; :class:`PublishRefused` names the column at fault."""
        if len(row) != len(self.columns):
            raise PublishRefused("line", f"{len(row)} cells where the header has "
                                         f"{len(self.columns)}")
        for cell in row:
            refuse_non_utf8(cell)
        cells = dict(zip(self.columns, row, strict=True))
        event: dict[str, Any] = {name: cells[name] for name in ATTRIBUTES
                                 if name in cells and cells[name] != ""}
        event["data"] = self._data(cells)
        return event

    def _data(self, cells: Mapping[str, str]) -> dict[str, Any]:
        provider_topic(self.catalog, cells["source"], cells["type"])
        schema = self.catalog.dataset(cells["type"]).latest.parsed
        fields = {f["name"]: f["type"] for f in schema["fields"]}
        named = schema.get("__named_schemas", {})
        data: dict[str, Any] = {}
        for name, cell in cells.items():
            if name in ATTRIBUTES:
                continue
            if name not in fields:
                raise PublishRefused(f"column {name}", f"not a field of {cells['type']} "
                                                       f"(known: {', '.join(fields)})")
            if cell != "":
                data[name] = _value(_kind(fields[name], named), cell, f"data.{name}")
        return data


def _column(name: str, place: int) -> str:
    """A header cell as a column name; a header that holds a NIR is named by its place only."""
    if contains_nir(name):
        raise CsvHeaderRefused(f"column {place} of the header holds what looks like a NIR")
    return name.strip()


def _kind(avro_type: Any, named: Mapping[str, Any]) -> str:
    """How a cell of a field of ``avro_type`` is read: boolean, integer, number, json or
    text (the codec then checks the text against the type)."""
    if isinstance(avro_type, list):
        others = [branch for branch in avro_type if branch != "null"]
        return _kind(others[0], named) if len(others) == 1 else "text"
    if isinstance(avro_type, str):
        if avro_type in named:
            return _kind(named[avro_type], named)
        return _PRIMITIVE_KINDS.get(avro_type, "text")
    if "logicalType" in avro_type:
        return "text"
    if avro_type["type"] in _JSON_KINDS:
        return "json"
    return _kind(avro_type["type"], named) if isinstance(avro_type["type"], str) else "text"


def _value(kind: str, cell: str, field: str) -> Any:
    """The cell as the JSON value the codec expects, or a refusal naming the field."""
    if kind == "boolean":
        if cell.lower() not in ("true", "false"):
            raise PublishRefused(field, "expected true or false")
        return cell.lower() == "true"
    if kind == "integer":
        if not _INTEGER.fullmatch(cell.strip()):
            raise PublishRefused(field, "expected a whole number")
        return int(cell)
    if kind == "number":
        try:
            return float(cell)
        except ValueError:
            raise PublishRefused(field, "expected a number") from None
    if kind == "json":
        try:
            return json.loads(cell)
        except (ValueError, RecursionError):
            raise PublishRefused(field, "expected JSON (an array or an object)") from None
    return cell
