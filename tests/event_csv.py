"""Published events written as a provider's CSV export would hold them (the README's mapping):
the attributes in their own columns, each data field in one, JSON for nested values."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ATTRIBUTE_COLUMNS = ["source", "type", "subject", "time"]


def cell(value: Any) -> str:
    """A data value as its cell: empty for null, true/false, JSON for arrays and objects."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def events_csv(events: Iterable[Mapping[str, Any]], fields: Sequence[str],
               with_id: bool = False) -> str:
    """A CSV file of ``events`` (of one dataset, whose data fields are ``fields``)."""
    columns = [*ATTRIBUTE_COLUMNS, *(["id"] if with_id else []), *fields]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for event in events:
        writer.writerow([cell(event[c]) if c in event and c != "data" else
                         cell(event["data"].get(c)) for c in columns])
    return buffer.getvalue()
