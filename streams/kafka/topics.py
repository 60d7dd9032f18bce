"""Kafka topics the bus owns: their names and the configuration it wants them to have.

Plain names and values, with no client: the routing rules and the state read them without
pulling in Kafka. Creating and describing topics is :mod:`streams.kafka.admin`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.catalog import Catalog
from streams.settings import Settings

CONTRACTS = "bus.contracts"
CONSENTS = "bus.consents"
POPULATION = "bus.population"
AUDIT = "bus.audit"
DLQ = "bus.dlq"
TOKENS = "bus.tokens"

PROVIDER_PREFIX = "provider."
"""Every provider topic is ``provider.<provider>.<dataset>``."""

BUS_RECORD_TOPICS = {"audit": AUDIT, "consent": CONSENTS, "contract": CONTRACTS,
                     "dead_letter": DLQ, "population": POPULATION, "token": TOKENS}
"""The topic each of the bus's own record types is written to."""


def bus_topics(settings: Settings) -> list[TopicSpec]:
    """The bus's own topics: compacted state, append-only audit, dead letters, and the
    gateway's token hashes (compacted: only each principal's latest token counts)."""
    compacted = {"cleanup_policy": "compact", "min_compaction_lag_ms": "60000"}
    return [
        spec(settings, CONTRACTS, **compacted),
        spec(settings, CONSENTS, **compacted),
        spec(settings, POPULATION, **compacted),
        spec(settings, AUDIT, cleanup_policy="delete", retention_ms="-1"),
        spec(settings, DLQ, cleanup_policy="delete", retention_ms=str(90 * 86_400_000)),
        spec(settings, TOKENS, cleanup_policy="compact"),
    ]


def catalog_topics(settings: Settings, catalog: Catalog) -> list[TopicSpec]:
    """The bus's own topics and every provider topic of the catalog: what the operator creates
    before providers publish and workers route (delivery topics come with their contracts)."""
    return [*bus_topics(settings), *(spec(settings, t) for t in catalog.provider_topics())]


@dataclass(frozen=True)
class TopicSpec:
    """A topic as the bus wants it: name, partitions and topic-level configuration."""

    name: str
    partitions: int
    replication: int
    config: dict[str, str] = field(default_factory=dict)


def spec(settings: Settings, name: str, **config: str) -> TopicSpec:
    """A topic spec with the bus's partition count and replication factor."""
    return TopicSpec(name, settings.topic_partitions, settings.topic_replication,
                     {key.replace("_", "."): value for key, value in config.items()})
