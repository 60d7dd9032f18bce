"""A schema registry in memory, for unit tests that encode and decode without the real one."""

from __future__ import annotations

import json
from typing import Any

from schemas.registry import UnknownSchemaId, canonical


class MemoryRegistry:
    """Just what :class:`AvroSerde` asks of a registry: ids for schemas, schemas by id."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, Any] = {}
        self.compatibility: dict[str, str] = {}

    def register(self, subject: str, schema: Any) -> int:
        text = canonical(schema)
        if (subject, text) not in self._ids:
            self._ids[(subject, text)] = len(self._schemas) + 1
            self._schemas[len(self._schemas) + 1] = json.loads(text)
        return self._ids[(subject, text)]

    def lookup(self, subject: str, schema: Any) -> int | None:
        return self._ids.get((subject, canonical(schema)))

    def schema(self, schema_id: int) -> Any:
        if schema_id not in self._schemas:  # as the real registry's client says a 404
            raise UnknownSchemaId(f"no schema with id {schema_id} in the registry")
        return self._schemas[schema_id]

    def set_compatibility(self, subject: str, level: str) -> None:
        self.compatibility[subject] = level
