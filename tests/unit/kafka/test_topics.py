"""The configuration the bus wants for its own topics and the provider topics follows the
settings, in Kafka's units."""

from __future__ import annotations

from datetime import timedelta

from schemas.catalog import Catalog
from streams.kafka.topics import (
    AUDIT,
    AUDIT_CHECKPOINTS,
    CONSENTS,
    DLQ,
    POPULATION,
    TOMBSTONES_KEPT,
    catalog_topics,
)
from streams.settings import Settings
from streams.state.directory_store import STALE_AFTER

HOUR_MS = 3_600_000


def test_retentions_come_from_the_settings() -> None:
    settings = Settings(provider_retention=timedelta(hours=36), audit_retention=timedelta(
        days=200), audit_checkpoints_retention=timedelta(days=300), dlq_retention=timedelta(
        hours=5))
    catalog = Catalog.load()
    configs = {s.name: s.config for s in catalog_topics(settings, catalog)}
    assert configs[AUDIT]["retention.ms"] == str(200 * 24 * HOUR_MS)
    assert configs[AUDIT_CHECKPOINTS]["retention.ms"] == str(300 * 24 * HOUR_MS)
    assert configs[DLQ]["retention.ms"] == str(5 * HOUR_MS)
    for topic in catalog.provider_topics():
        assert configs[topic] == {"cleanup.policy": "delete", "retention.ms": str(36 * HOUR_MS)}


def test_state_topics_keep_tombstones_longer_than_a_worker_s_store_stays_fresh() -> None:
    configs = {s.name: s.config for s in catalog_topics(Settings(), Catalog.load())}
    for topic in (CONSENTS, POPULATION):
        assert configs[topic]["cleanup.policy"] == "compact"
        assert "retention.ms" not in configs[topic]  # compaction only: no record ages out
        assert int(configs[topic]["delete.retention.ms"]) >= 2 * STALE_AFTER * 1000
        assert configs[topic]["max.compaction.lag.ms"] == str(7 * 24 * HOUR_MS)
    assert TOMBSTONES_KEPT.total_seconds() >= 2 * STALE_AFTER
