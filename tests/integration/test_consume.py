"""``consume --max N``: a subscriber's group reads each delivery once, none skipped.

Deliveries are written straight to a contract's delivery topic (several partitions, so that one
fetch returns records of more than one), then read twice in the same consumer group with
``--max N``: each run prints exactly N, and together they print, on every partition, the first
records in order, none twice and none left behind.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import fastavro
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from connectors.deliveries import read_deliveries
from schemas.catalog import Catalog
from schemas.cloudevent import kafka_headers, to_kafka
from schemas.codec import encode, frame, from_json
from schemas.registry import SchemaRegistry
from streams.kafka import clients
from streams.settings import Settings
from streams.state.contract import Contract
from tests.conftest import Services

CATALOG = Catalog.load()
PARTITIONS = 3
PER_RUN = 7
WRITTEN = 3 * PER_RUN


def _contract() -> Contract:
    return Contract.checked({
        "id": f"consume-{uuid.uuid4().hex[:12]}", "subscriber": "ville-de-test",
        "subscriber_siret": "21690123100011", "purpose": "test de lecture",
        "legal_basis": "test", "datasets": {"quotient_familial": ["quotient_familial", "annee"]},
        "consent": "not_required", "population": "all", "retention": "P1D",
        "valid_from": "2026-01-01",
    }, CATALOG)


async def _write_deliveries(settings: Settings, services: Services, contract: Contract,
                            ) -> dict[str, tuple[int, int]]:
    """Write the deliveries round-robin over the partitions; event id → (partition, offset)."""
    admin = AIOKafkaAdminClient(**clients.connection_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(contract.delivery_topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    schema = contract.delivery_schema(CATALOG)
    with SchemaRegistry(services.registry_url) as registry:
        schema_id = registry.register(contract.delivery_subject, schema)
    parsed = fastavro.parse_schema(schema)
    producer = clients.producer(settings)
    await producer.start()
    written: dict[str, tuple[int, int]] = {}
    try:
        for index in range(WRITTEN):
            value = frame(schema_id, encode(parsed, from_json(
                parsed, {"quotient_familial": 500 + index, "annee": 2026})))
            event_id = f"delivery-{index}"
            pseudonym = f"ps1_{index:064x}"
            message = to_kafka({"id": event_id, "source": "cnaf", "type": "quotient_familial",
                                "subject": pseudonym, "time": datetime.now(UTC),
                                "contract": contract.id}, value, pseudonym)
            sent = await producer.send_and_wait(
                contract.delivery_topic, value, key=pseudonym.encode(),
                headers=kafka_headers(message), partition=index % PARTITIONS)
            written[event_id] = (sent.partition, sent.offset)
    finally:
        await producer.stop()
    return written


async def test_consume_max_prints_n_and_commits_exactly_what_it_printed(
        settings: Settings, services: Services) -> None:
    contract = _contract()
    written = await _write_deliveries(settings, services, contract)
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    who = (contract.subscriber, contract.id)
    assert await read_deliveries(settings, *who, first.append, from_beginning=True,
                                 max_events=PER_RUN, timeout=20) == PER_RUN
    assert await read_deliveries(settings, *who, second.append, from_beginning=False,
                                 max_events=PER_RUN, timeout=20) == PER_RUN
    assert len(first) == PER_RUN
    assert len(second) == PER_RUN
    printed = [event["id"] for event in first + second]
    assert len(set(printed)) == 2 * PER_RUN, "a delivery was printed twice"
    by_partition: dict[int, list[int]] = defaultdict(list)
    for event_id in printed:
        partition, offset = written[event_id]
        by_partition[partition].append(offset)
    for partition, offsets in by_partition.items():
        assert offsets == list(range(len(offsets))), f"partition {partition}: skipped or reordered"
