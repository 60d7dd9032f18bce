"""Kafka topics the bus owns: their names and the configuration it wants them to have.

Plain names and values, with no client: the routing rules and the state read them without
pulling in Kafka. Creating and describing topics is :mod:`streams.kafka.admin`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from schemas.catalog import Catalog
from streams.settings import Settings

CONTRACTS = "bus.contracts"
CONSENTS = "bus.consents"
POPULATION = "bus.population"
AUDIT = "bus.audit"
AUDIT_CHECKPOINTS = "bus.audit.checkpoints"
DLQ = "bus.dlq"
TOKENS = "bus.tokens"

PROVIDER_PREFIX = "provider."
"""Every provider topic is ``provider.<provider>.<dataset>``."""

BUS_RECORD_TOPICS = {"audit": AUDIT, "audit_checkpoint": AUDIT_CHECKPOINTS, "consent": CONSENTS,
                     "contract": CONTRACTS, "dead_letter": DLQ, "population": POPULATION,
                     "token": TOKENS}
"""The topic each of the bus's own record types is written to."""


TOMBSTONES_KEPT = timedelta(days=1)
"""How long a compacted state topic keeps a tombstone (``delete.retention.ms``) for its readers
to see: a worker's store left alone for longer than half of it is rebuilt rather than read on
(:data:`streams.state.directory_store.STALE_AFTER`), so the bus owns this key rather than trust
the broker's default."""

COMPACTED_WITHIN = timedelta(days=7)
"""The longest a superseded record or a tombstoned key stays on a state topic
(``max.compaction.lag.ms``): without it, the cleaner waits for half a partition to be dirty,
which a quiet topic may never reach, and never touches the segment being written; with it, the
broker rolls and compacts that segment in time, so a person's expired choices really go."""


def bus_topics(settings: Settings) -> list[TopicSpec]:
    """The bus's own topics: compacted state, append-only audit, dead letters, and the
    gateway's token hashes (compacted: only each principal's latest token counts).

    The state topics keep every key's latest record, with no retention of their own: a
    withdrawn consent or a removal leaves them by the tombstone written once the audit
    retention has passed. The audit trail, its checkpoints and the dead letters are deleted by
    age, as the settings say."""
    compacted = {"cleanup_policy": "compact", "min_compaction_lag_ms": "60000",
                 "max_compaction_lag_ms": _ms(COMPACTED_WITHIN),
                 "delete_retention_ms": _ms(TOMBSTONES_KEPT)}
    return [
        spec(settings, CONTRACTS, **compacted),
        spec(settings, CONSENTS, **compacted),
        spec(settings, POPULATION, **compacted),
        spec(settings, AUDIT, cleanup_policy="delete",
             retention_ms=_ms(settings.audit_retention)),
        spec(settings, AUDIT_CHECKPOINTS, cleanup_policy="delete",
             retention_ms=_ms(settings.checkpoints_retention())),
        spec(settings, DLQ, cleanup_policy="delete", retention_ms=_ms(settings.dlq_retention)),
        spec(settings, TOKENS, cleanup_policy="compact"),
    ]


def provider_topic_spec(settings: Settings, topic: str) -> TopicSpec:
    """A provider topic: its events deleted once the provider retention has passed."""
    return spec(settings, topic, cleanup_policy="delete",
                retention_ms=_ms(settings.provider_retention))


def catalog_topics(settings: Settings, catalog: Catalog) -> list[TopicSpec]:
    """The bus's own topics and every provider topic of the catalog: what the operator creates
    before providers publish and workers route (delivery topics come with their contracts)."""
    return [*bus_topics(settings),
            *(provider_topic_spec(settings, t) for t in catalog.provider_topics())]


def _ms(duration: timedelta) -> str:
    """A duration as Kafka's ``*.ms`` settings spell it."""
    return str(int(duration.total_seconds() * 1000))


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
