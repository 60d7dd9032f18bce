"""Put the catalog into the schema registry: every version, in order, under its subject.

Subjects follow the Confluent topic naming strategy, ``<topic>-value``, so that any standard
Avro deserializer finds them. Each subject is set to BACKWARD_TRANSITIVE, the same rule
``circulation schemas check`` proves locally, so the registry refuses any later schema that would
break a subscriber. Registering an already-registered schema returns its id: the whole operation
is idempotent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from schemas.catalog import Catalog, SchemaVersion
from schemas.registry import Compatibility, SchemaRegistry

COMPATIBILITY: Compatibility = "BACKWARD_TRANSITIVE"


@dataclass(frozen=True)
class Registration:
    """One schema version as the registry holds it."""

    subject: str
    version: int
    schema_id: int


def value_subject(topic: str) -> str:
    """The registry subject of a topic's values (Confluent TopicNameStrategy)."""
    return f"{topic}-value"


def dataset_subjects(catalog: Catalog) -> Iterator[tuple[str, Mapping[int, SchemaVersion]]]:
    """(subject, versions) for every provider topic the catalog allows."""
    for dataset in catalog.datasets():
        for provider in dataset.providers:
            yield value_subject(catalog.topic_for(provider, dataset.id)), dataset.versions


def register_versions(registry: SchemaRegistry, subject: str,
                      versions: Mapping[int, SchemaVersion]) -> list[Registration]:
    """Register ``versions`` oldest first under ``subject`` and pin its compatibility level."""
    done = []
    for number in sorted(versions):
        schema_id = registry.register(subject, versions[number].text)
        done.append(Registration(subject, number, schema_id))
        if len(done) == 1:  # a PUT is idempotent, and a GET 404s on Confluent when unset
            registry.set_compatibility(subject, COMPATIBILITY)
    return done
