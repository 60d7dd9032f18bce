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
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

from connectors.event_files import refuse_non_utf8
from connectors.publisher import PublishRefused, provider_topic
from schemas.catalog import Catalog
from schemas.nir_detection import contains_nir

ATTRIBUTES = ("source", "type", "subject", "id", "time")
"""Columns that are the event's attributes; every other one is a field of its data."""
REQUIRED = ("source", "type", "subject")
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
_PRIMITIVE_KINDS = {"boolean": "boolean", "int": "integer", "long": "integer",
                    "float": "number", "double": "number"}
_JSON_KINDS = ("record", "array", "map")


class CsvHeaderRefused(ValueError):
    """A header the file cannot be read with; the message names the column, never a cell."""


def numbered_rows(stream: IO[str]) -> Iterator[tuple[int, list[str] | PublishRefused]]:
    """Each non-blank row with the number of the line it starts on (a quoted cell may span
    lines), or the refusal of a row that is not CSV; the header row included."""
    reader = csv.reader(stream, strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # the csv module's messages describe the syntax, not cells
            yield start, PublishRefused("line", f"not CSV ({exc})")
            start = reader.line_num + 1
            continue
        number, start = start, reader.line_num + 1
        if any(cell.strip() for cell in row):
            yield number, row


def row_text(row: Sequence[str]) -> str:
    """A row written back as one CSV record, for the rejected-lines file."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(row)
    return buffer.getvalue()


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
