"""Decoding reads a record as the reader's schema, and skips resolution only when there is none.

The router reads every provider record as its dataset's latest schema. When the record was
written with that very schema, fastavro is not asked to resolve it (it reads a third faster);
when it was written with an older version, resolution must still happen (new fields get their
defaults), including for the same reader object used on both.
"""

from __future__ import annotations

import pytest

from schemas.catalog import Catalog
from schemas.codec import encode, frame, from_json
from schemas.registry import RegistryRefused
from schemas.serde import AvroSerde
from streams.dev.synthetic import generate
from tests.unit.memory_registry import MemoryRegistry

CATALOG = Catalog.load()
DATASET = CATALOG.dataset("statut_etudiant_boursier")  # version 2 adds montant_annuel_centimes


def _written(serde: AvroSerde, version: int) -> tuple[bytes, dict[str, object]]:
    schema = DATASET.version(version)
    datum = from_json(schema.parsed, next(iter(generate(DATASET.id, 1, 7)))["data"])
    subject = f"provider.cnous.{DATASET.id}-value"
    return frame(serde.schema_id(subject, schema.text), encode(schema.parsed, datum)), datum


def test_a_record_written_with_the_reader_schema_reads_back_unchanged() -> None:
    serde = AvroSerde(MemoryRegistry())  # type: ignore[arg-type]
    value, datum = _written(serde, 2)
    reader = DATASET.latest.parsed
    assert serde.decode(value, reader)[1] == datum
    assert serde.decode(value, reader)[1] == serde.decode(value)[1]


def test_an_older_record_is_still_resolved_to_the_reader_schema() -> None:
    serde = AvroSerde(MemoryRegistry())  # type: ignore[arg-type]
    reader = DATASET.latest.parsed
    newer, _ = _written(serde, 2)
    older, datum = _written(serde, 1)
    serde.decode(newer, reader)  # the same reader first meets a writer that is itself
    as_written = serde.decode(older)[1]
    as_read = serde.decode(older, reader)[1]
    assert "montant_annuel_centimes" not in as_written
    assert as_read == {**datum, "montant_annuel_centimes": None}


class _ReadOnlyRegistry(MemoryRegistry):
    """A registry that lets its caller look schemas up and refuses registrations (403), as a
    secured registry treats every principal but the operator."""

    def register(self, subject: str, schema: object) -> int:
        raise RegistryRefused(f"schema registry refused POST /subjects/{subject}/versions: "
                              "HTTP 403 (the credential may not do this)")


def test_a_reader_only_looks_schemas_up_and_is_told_who_registers_the_missing() -> None:
    dataset = Catalog.load().dataset("quotient_familial")
    registry = _ReadOnlyRegistry()
    MemoryRegistry.register(registry, "provider.cnaf.quotient_familial-value",
                            dataset.latest.text)
    serde = AvroSerde(registry)  # type: ignore[arg-type]
    assert serde.schema_id("provider.cnaf.quotient_familial-value", dataset.latest.text) == 1
    with pytest.raises(RegistryRefused, match="circulation schemas register"):
        serde.schema_id("provider.msa.quotient_familial-value", dataset.latest.text)
