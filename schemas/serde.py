"""Confluent-framed Avro against the schema registry, both ways, with every id cached.

Encoding looks up (once) the writer schema's id under the record's subject, registering it only
where it is missing and the caller may, and frames the payload with the id; decoding reads the
id, fetches (once) the writer schema, and resolves it against the reader's schema, which is how
an old reader keeps reading newer records.

The registry client is synchronous. An asynchronous process (the routing worker) must never ask
it on its event loop: a registry that is slow or down would freeze everything the loop runs,
the consumer group's heartbeats included. Such a process calls :meth:`AvroSerde.fetch_writers`
and :meth:`AvroSerde.fetch_ids` first: they fetch what the cache lacks in a thread, and wait out
a registry that does not answer (:class:`~schemas.registry.RegistryUnavailable`), retrying with
a capped backoff, for as long as it takes. Decoding and encoding then find everything cached. A
schema id the registry says it does not hold is remembered as such, so that the record naming
it is refused without asking again; a registry that does not answer refuses no record.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import fastavro
import structlog

from schemas.codec import (
    DecodeError,
    Schema,
    decode,
    encode,
    frame,
    from_json,
    schema_ids,
    unframe,
)
from schemas.registry import (
    RegistryRefused,
    RegistryUnavailable,
    SchemaRegistry,
    UnknownSchemaId,
)

log = structlog.get_logger(__name__)

FIRST_RETRY_S = 0.5
MAX_RETRY_S = 5.0
"""Waits between two attempts at a registry that does not answer: doubling from the first, up to
the most (each attempt also takes up to the client's timeout)."""
MAX_ABSENT_IDS = 10_000
"""Schema ids known to be missing from the registry that are remembered; past it they are all
forgotten at the next fetch (a writer naming random ids must not grow memory forever), so a
caller that awaited anything since its own fetch checks :meth:`AvroSerde.unknown_writers` again
before decoding."""


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
        self._absent: set[int] = set()
        """Ids the registry answered it does not hold: their records cannot be decoded."""
        self._fetching = asyncio.Lock()
        """One fetch at a time: the client is used by one thread at a time, and ids known to
        be missing are forgotten only between two fetches."""

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
            if schema_id in self._absent:
                raise DecodeError(f"no schema with id {schema_id} in the registry")
            try:
                cached = fastavro.parse_schema(self.registry.schema(schema_id))
            except UnknownSchemaId as exc:
                self._absent.add(schema_id)
                raise DecodeError(str(exc)) from None
            self._writers[schema_id] = cached
        return cached

    def unknown_writers(self, values: Iterable[bytes | None]) -> set[int]:
        """The schema ids the framed ``values`` name that are neither cached nor known to be
        missing (a value that is not framed names none: it cannot be decoded anyway)."""
        return {i for i in schema_ids(values) if i not in self._writers and i not in self._absent}

    def forget_missing(self, values: Iterable[bytes | None]) -> None:
        """Ask the registry again, at the next fetch, about the ids ``values`` name that it
        did not hold: records replayed once their schema is registered must not be refused
        from memory."""
        self._absent.difference_update(schema_ids(values))

    def unknown_ids(self, schemas: Iterable[tuple[str, WriterSchema]],
                    ) -> list[tuple[str, WriterSchema]]:
        """The (subject, schema) pairs whose registry id is not cached yet."""
        return [(subject, schema) for subject, schema in schemas
                if (subject, schema.text) not in self._ids]

    async def fetch_writers(self, values: Iterable[bytes | None]) -> None:
        """Cache, off the event loop, the writer schema of every framed value in ``values``,
        waiting out a registry that does not answer. Once it returns, decoding them asks the
        registry nothing, until the caller next awaits (another task may then forget ids
        known to be missing: see :data:`MAX_ABSENT_IDS`)."""
        values = list(values)
        if not self.unknown_writers(values):
            return
        async with self._fetching:  # the forgetting, the asking and the fetching together
            if len(self._absent) > MAX_ABSENT_IDS:
                self._absent.clear()
            wanted = self.unknown_writers(values)
            if wanted:
                await self._patiently(lambda: self._fetch_writers(wanted),
                                      f"writer schemas {sorted(wanted)}")

    def _fetch_writers(self, wanted: set[int]) -> None:
        for schema_id in sorted(wanted):
            # One the registry does not hold is remembered as missing: the record naming it is
            # refused when decoded.
            with contextlib.suppress(DecodeError):
                self.writer_schema(schema_id)

    async def fetch_ids(self, schemas: Iterable[tuple[str, WriterSchema]]) -> None:
        """Cache, off the event loop, the registry id of every (subject, schema) pair,
        registering it where it is missing and the caller may, as :meth:`schema_id` does;
        waits out a registry that does not answer."""
        schemas = list(schemas)
        if not self.unknown_ids(schemas):
            return
        async with self._fetching:
            wanted = self.unknown_ids(schemas)
            if wanted:
                await self._patiently(
                    lambda: [self.schema_id(subject, schema.text) for subject, schema in wanted],
                    f"schema ids under {sorted({subject for subject, _ in wanted})}")

    async def _patiently(self, fetch: Callable[[], object], what: str) -> None:
        """Run ``fetch`` in a thread until the registry answers; what it caches stays cached,
        so each attempt asks only for what is still missing. Any other registry error (a
        refused credential, a request it rejects) is raised: waiting would not cure it."""
        delay = FIRST_RETRY_S
        for attempt in itertools.count(1):
            try:
                await asyncio.to_thread(fetch)
            except RegistryUnavailable as exc:
                log.warning("schema registry unavailable: waiting for it", needed=what,
                            attempt=attempt, retry_in_s=delay, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_S)
            else:
                if attempt > 1:
                    log.info("schema registry answers again", needed=what, attempts=attempt)
                return

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
