"""The operator's provisioning of a cluster for the catalog: its topics and its schemas.

On a secured cluster only the operator (``bus-admin``) creates topics and registers schemas;
providers and workers only look schemas up and write. So these are one step of the operator's,
run by ``circulation schemas register`` and by ``circulation local up --secure``, before any
provider publishes or worker routes (delivery topics come with their contracts).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.catalog import Catalog
from schemas.registration import Registration, dataset_subjects, register_versions, value_subject
from streams.kafka import clients
from streams.kafka.admin import ensure_topics
from streams.kafka.topics import BUS_RECORD_TOPICS, catalog_topics
from streams.settings import Settings


@dataclass(frozen=True)
class Provisioned:
    """What provisioning found or made: topics created, versions registered by subject."""

    created_topics: list[str]
    subjects: dict[str, list[Registration]]


async def provision_catalog(settings: Settings, catalog: Catalog) -> Provisioned:
    """Create every topic of the catalog (aligning the configuration of those that exist) and
    register every schema version under its subject; idempotent."""
    created = await ensure_topics(settings, catalog_topics(settings, catalog))
    subjects = list(dataset_subjects(catalog))
    subjects += [(value_subject(topic), catalog.bus_record(name).versions)
                 for name, topic in BUS_RECORD_TOPICS.items()]
    registered = {}
    with clients.schema_registry(settings) as registry:
        for subject, versions in subjects:
            registered[subject] = register_versions(registry, subject, versions)
    return Provisioned(created, registered)
