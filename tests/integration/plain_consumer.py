"""What any subscriber's Confluent Avro consumer does, written here by hand.

The integration tests read what the bus wrote with this decoder (httpx against the registry's
``/schemas/ids/{id}``, fastavro, the wire format unpacked with ``struct``), never with the
project's own codec: the point is that a standard consumer can read it.
"""

from __future__ import annotations

import copy
import io
import json
import struct
from datetime import date, datetime
from typing import Any

import fastavro
import httpx


class PlainDecoder:
    """Confluent wire format read by hand: magic 0, big-endian id, Avro body (fastavro)."""

    def __init__(self, registry_url: str) -> None:
        self._http = httpx.Client(base_url=registry_url.rstrip("/"), timeout=10)
        self._schemas: dict[int, tuple[Any, Any]] = {}

    def close(self) -> None:
        self._http.close()

    def writer(self, schema_id: int) -> tuple[Any, Any]:
        """(JSON form, fastavro-parsed form) of the schema registered under ``schema_id``."""
        if schema_id not in self._schemas:
            response = self._http.get(f"/schemas/ids/{schema_id}")
            response.raise_for_status()
            raw = json.loads(response.json()["schema"])
            self._schemas[schema_id] = (raw, fastavro.parse_schema(copy.deepcopy(raw)))
        return self._schemas[schema_id]

    def latest_id(self, subject: str) -> int:
        """The id of the latest version registered under ``subject``."""
        response = self._http.get(f"/subjects/{subject}/versions/latest")
        response.raise_for_status()
        return int(response.json()["id"])

    def decode(self, value: bytes) -> tuple[int, Any]:
        """(schema id, datum); the whole value must be consumed. A union's branch comes as
        (record full name, datum)."""
        assert len(value) > 5, "too short for the Confluent wire format"
        magic, schema_id = struct.unpack(">bI", value[:5])
        assert magic == 0, f"magic byte {magic}, expected 0"
        raw, parsed = self.writer(schema_id)
        body = io.BytesIO(value[5:])
        datum = fastavro.schemaless_reader(body, parsed, None,
                                           return_record_name=isinstance(raw, list))
        assert body.tell() == len(value) - 5, "bytes left after the Avro record"
        return schema_id, datum


def json_form(value: Any) -> Any:
    """A decoded datum in the published JSON form (dates as ``YYYY-MM-DD``)."""
    if isinstance(value, dict):
        return {k: json_form(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_form(v) for v in value]
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return value
