"""Confluent-framed Avro against the schema registry, both ways, with every id cached.

Encoding looks up (once) the writer schema's id under the record's subject, registering it only
where it is missing and the caller may, and frames the payload with the id; decoding reads the
id, fetches (once) the writer schema, and resolves it against the reader's schema, which is how
an old reader keeps reading newer records.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, Protocol

import fastavro

from schemas.codec import DecodeError, Schema, decode, encode, frame, from_json, unframe
from schemas.registry import RegistryRefused, SchemaRegistry, UnknownSchemaId


class WriterSchema(Protocol):
    """A schema to write with: its registry text and its fastavro-parsed form."""

    @property
    def text(self) -> str: ...

    @property
    def parsed(self) -> Schema: ...


class AvroSerde:
    """Serialiser and deserialiser for one process; the registry is asked once per schema."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self._ids: dict[tuple[str, str], int] = {}
        self._writers: dict[int, Any] = {}
        self._resolutions: dict[tuple[int, int], tuple[Schema, bool]] = {}

    def schema_id(self, subject: str, schema_text: str) -> int:
        """The registry id of ``schema_text`` under ``subject``: looked up, and registered
        only when it is not there yet. On a secured registry only the operator registers, so
        a provider or a worker only ever looks up; for them an unregistered schema is an
        error saying who must register it."""
        key = (subject, schema_text)
        cached = self._ids.get(key)
        if cached is None:
            cached = self.registry.lookup(subject, schema_text)
            if cached is None:
                cached = self._register(subject, schema_text)
            self._ids[key] = cached
        return cached

    def _register(self, subject: str, schema_text: str) -> int:
        try:
            return self.registry.register(subject, schema_text)
        except RegistryRefused as exc:
            raise RegistryRefused(
                f"{subject} has no such schema registered and this principal may not register "
                "one: the operator registers the catalog (`circulation schemas register`) and "
                f"the contracts (`circulation contracts apply`); {exc}") from None

    def encode_datum(self, subject: str, schema: WriterSchema, datum: Any) -> bytes:
        """Frame an Avro datum already in fastavro's form."""
        return self.framed(subject, schema, encode(schema.parsed, datum))

    def framed(self, subject: str, schema: WriterSchema, payload: bytes) -> bytes:
        """Frame an Avro payload already encoded with ``schema`` (one encoding may be framed
        for several subjects whose schemas encode alike)."""
        return frame(self.schema_id(subject, schema.text), payload)

    def encode_json(self, subject: str, schema: WriterSchema, document: Mapping[str, Any],
                    ) -> bytes:
        """Validate a JSON-form document against ``schema`` and frame it."""
        return self.encode_datum(subject, schema, from_json(schema.parsed, dict(document)))

    def writer_schema(self, schema_id: int) -> Any:
        """The parsed schema a record was written with (a record, or a union of records)."""
        cached = self._writers.get(schema_id)
        if cached is None:
            try:
                cached = fastavro.parse_schema(self.registry.schema(schema_id))
            except UnknownSchemaId as exc:
                raise DecodeError(str(exc)) from None
            self._writers[schema_id] = cached
        return cached

    def decode(self, value: bytes, reader: Schema | None = None) -> tuple[int, Any]:
        """(writer schema id, datum) of a framed value, read as ``reader`` when given."""
        schema_id, payload = unframe(value)
        writer = self.writer_schema(schema_id)
        if reader is not None and self._same(schema_id, writer, reader):
            reader = None  # nothing to resolve, and fastavro reads a third faster without
        return schema_id, decode(writer, reader, payload)

    def _same(self, schema_id: int, writer: Schema, reader: Schema) -> bool:
        """Whether ``reader`` is the writer schema itself (asked once per id and reader)."""
        known = self._resolutions.get((schema_id, id(reader)))
        if known is None or known[0] is not reader:
            known = self._resolutions[(schema_id, id(reader))] = (reader, writer == reader)
        return known[1]

    def decode_record(self, value: bytes) -> tuple[Schema, Any]:
        """(record schema, datum) of a framed value whose writer schema may be a union.

        A delivery topic of a contract naming several datasets carries a union of projected
        records; the branch a value was written with says which dataset it is.
        """
        schema_id, payload = unframe(value)
        writer = self.writer_schema(schema_id)
        if not isinstance(writer, list):
            return writer, decode(writer, None, payload)
        try:
            named: Any = fastavro.schemaless_reader(io.BytesIO(payload), writer, None,
                                                    return_record_name=True)
            name, datum = named
        except (EOFError, ValueError, IndexError, KeyError) as exc:
            raise DecodeError(f"not a valid Avro record for this schema: {exc!r}") from exc
        branch = next(b for b in writer if isinstance(b, dict) and b.get("name") == name)
        return branch, datum
