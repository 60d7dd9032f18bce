"""BACKWARD_TRANSITIVE compatibility of the catalog, decided by Apache Avro's own checker.

The schema registry enforces this rule when a schema is registered; checking it in the unit tests
catches a breaking change at review time rather than at deployment. Every version of a dataset (or
bus record) must read data written with every older version, so a subscriber can upgrade its reader
and still replay its whole delivery topic.

Avro's checker merges all problems of a record into one result, losing which message belongs to
which location; so records (also inside arrays and maps) are compared field by field, each
field's type pair being left to the checker. Each :class:`Incompatibility` thus names one field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
    check_schema_names,
    lookup_writer_field,
)
from avro.schema import ArraySchema, MapSchema, RecordSchema

from schemas.catalog import BUS_FOLDER, Catalog, SchemaVersion


@dataclass(frozen=True)
class Incompatibility:
    """Data written with ``writer_version`` cannot be read with ``reader_version``."""

    schema: str
    """Dataset id, or ``bus/<name>`` for a bus record."""
    reader_version: int
    writer_version: int
    field: str
    """Field path in the reader schema, e.g. ``inscriptions[].statut``; ``(record)`` at the root."""
    location: str
    """Avro's location of the problem, e.g. ``/fields/0/type/items/fields/2/type``."""
    kinds: tuple[str, ...]
    """Avro's incompatibility types, e.g. ``reader_field_missing_default_value``."""
    messages: tuple[str, ...]

    def __str__(self) -> str:
        return (
            f"{self.schema}: v{self.reader_version} cannot read v{self.writer_version} data: "
            f"{self.field} ({self.location}): {', '.join(self.kinds)}: {'; '.join(self.messages)}"
        )


def check_catalog(catalog: Catalog) -> list[Incompatibility]:
    """Every problem of every dataset and bus record; an empty list means the catalog is sound."""
    problems = []
    for dataset in catalog.datasets():
        problems += check_versions(dataset.id, dataset.versions)
    for record in catalog.bus_records():
        problems += check_versions(f"{BUS_FOLDER}/{record.name}", record.versions)
    return problems


def check_versions(name: str, versions: Mapping[int, SchemaVersion]) -> list[Incompatibility]:
    """BACKWARD_TRANSITIVE: each version must read every older one, not only the previous."""
    parsed = {number: avro.schema.parse(v.text) for number, v in versions.items()}
    problems = []
    for reader in sorted(parsed):
        for writer in sorted(n for n in parsed if n < reader):
            for field, location, result in _problems(parsed[reader], parsed[writer], "", ["/"]):
                problems.append(
                    Incompatibility(
                        schema=name,
                        reader_version=reader,
                        writer_version=writer,
                        field=field or "(record)",
                        location=location,
                        kinds=tuple(sorted({k.value for k in result.incompatibilities})),
                        messages=tuple(sorted(result.messages)),
                    )
                )
    return problems


_Problem = tuple[str, str, SchemaCompatibilityResult]


def _problems(
    reader: avro.schema.Schema, writer: avro.schema.Schema, field: str, location: list[str]
) -> Iterator[_Problem]:
    """(field path, location, result) of each incompatible field of a reader/writer pair."""
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(reader, writer)
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return
    where = _format(location)
    if isinstance(reader, RecordSchema) and isinstance(writer, RecordSchema):
        # Should the field walk find nothing, still report what the checker saw.
        yield from list(_record_problems(reader, writer, field, location)) or [
            (field, where, result)
        ]
    elif isinstance(reader, ArraySchema) and isinstance(writer, ArraySchema):
        yield from _problems(reader.items, writer.items, f"{field}[]", [*location, "items"])
    elif isinstance(reader, MapSchema) and isinstance(writer, MapSchema):
        yield from _problems(reader.values, writer.values, f"{field}{{}}", [*location, "values"])
    else:
        yield field, where, result


def _record_problems(
    reader: RecordSchema,
    writer: RecordSchema,
    field: str,
    location: list[str],
) -> Iterator[_Problem]:
    """A renamed record, then each reader field: missing without default, or unreadable type."""
    renamed = check_schema_names(reader, writer, location)
    if renamed.compatibility is SchemaCompatibilityType.incompatible:
        yield field, _format([*location, "name"]), renamed
    for index, reader_field in enumerate(reader.fields):
        path = f"{field}.{reader_field.name}" if field else reader_field.name
        here = [*location, "fields", str(index)]
        writer_field = lookup_writer_field(writer, reader_field)
        if writer_field is not None:
            yield from _problems(reader_field.type, writer_field.type, path, [*here, "type"])
        elif not reader_field.has_default:
            missing = SchemaCompatibilityResult(
                SchemaCompatibilityType.incompatible,
                [SchemaIncompatibilityType.reader_field_missing_default_value],
                {"new field without a default, absent from older data"},
            )
            yield path, _format(here), missing


def _format(location: list[str]) -> str:
    """``["/", "fields", "3"]`` → ``/fields/3``, as Avro writes locations."""
    return "/" + "/".join(location[1:])
