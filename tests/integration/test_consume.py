"""``consume``: a subscriber's group reads each delivery once, none skipped.

Deliveries are written straight to a contract's delivery topic (several partitions, so that one
fetch returns records of more than one), then read twice in the same consumer group with
``--max N``: each run prints exactly N, and together they print, on every partition, the first
records in order, none twice and none left behind. A ``consume`` killed once its group has
committed has printed everything it committed, even into a pipe.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
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
from streams.state.contract_store import ContractStore
from tests.conftest import Services

CATALOG = Catalog.load()
PARTITIONS = 3
PER_RUN = 7
WRITTEN = 3 * PER_RUN
KILLED_AFTER = 300
"""Deliveries read by the ``consume`` killed: more than an output buffer holds."""
CLI = [sys.executable, "-m", "streams.cli"]


def _contract() -> Contract:
    return Contract.checked({
        "id": f"consume-{uuid.uuid4().hex[:12]}", "subscriber": "ville-de-test",
        "subscriber_siret": "21690123100011", "purpose": "test de lecture",
        "legal_basis": "test", "datasets": {"quotient_familial": ["quotient_familial", "annee"]},
        "consent": "not_required", "population": "all", "retention": "P1D",
        "valid_from": "2026-01-01",
    }, CATALOG)


async def _write_deliveries(settings: Settings, services: Services, contract: Contract,
                            count: int = WRITTEN, create: bool = True,
                            attributes: Callable[[int], Mapping[str, Any]] = lambda index: {},
                            first: int = 0) -> dict[str, tuple[int, int]]:
    """Write ``count`` deliveries round-robin over the partitions (the topic created unless
    ``create`` is false), numbered from ``first``, each with the CloudEvents ``attributes``
    of its number besides the usual ones; event id → (partition, offset)."""
    if create:
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
        for index in range(first, first + count):
            value = frame(schema_id, encode(parsed, from_json(
                parsed, {"quotient_familial": 500 + index, "annee": 2026})))
            event_id = f"delivery-{index}"
            pseudonym = f"ps1_{index:064x}"
            message = to_kafka({"id": event_id, "source": "cnaf", "type": "quotient_familial",
                                "subject": pseudonym, "time": datetime.now(UTC),
                                "contract": contract.id, **attributes(index)}, value, pseudonym)
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


async def test_a_consume_killed_after_committing_has_printed_everything_it_committed(
        settings: Settings, services: Services) -> None:
    """Into a pipe, as a subscriber's script reads it: what the group committed was printed,
    so a ``kill -9`` after the commit loses no delivery to the subscriber."""
    contract = _contract()
    with SchemaRegistry(services.registry_url) as registry:
        await ContractStore(settings, registry, CATALOG).apply([contract])
    written = await _write_deliveries(settings, services, contract, KILLED_AFTER, create=False)
    environment = {**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
                   "CIRCULATION_KAFKA_BOOTSTRAP": services.bootstrap,
                   "CIRCULATION_SCHEMA_REGISTRY_URL": services.registry_url}
    process = await asyncio.create_subprocess_exec(
        *CLI, "consume", contract.id, "--from-beginning", "--timeout", "120",
        stdout=asyncio.subprocess.PIPE, env=environment)
    assert process.stdout is not None
    reading = asyncio.ensure_future(process.stdout.read())  # as the subscriber's script does
    try:
        await _until_committed(settings, f"subscriber.{contract.subscriber}.{contract.id}",
                               len(written))
    finally:
        process.kill()
        await process.wait()
    printed = [json.loads(line)["id"] for line in (await reading).splitlines()]
    assert sorted(printed) == sorted(written), \
        f"{len(printed)} deliveries printed of the {len(written)} committed"


async def _until_committed(settings: Settings, group: str, count: int) -> None:
    """Until ``group`` has committed offsets covering ``count`` records."""
    async with clients.admin(settings) as admin:
        for _ in range(600):
            offsets = await admin.list_consumer_group_offsets(group)
            if sum(meta.offset for meta in offsets.values()) >= count:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{group} did not commit {count} records in 60 s")


async def test_a_consume_whose_reader_goes_away_ends_quietly(
        settings: Settings, services: Services) -> None:
    """``consume … | head -1``: the reader closes the pipe; consume exits 0 without a
    traceback, having committed no more than what was printed before."""
    contract = _contract()
    with SchemaRegistry(services.registry_url) as registry:
        await ContractStore(settings, registry, CATALOG).apply([contract])
    await _write_deliveries(settings, services, contract, KILLED_AFTER, create=False)
    environment = {**os.environ, "CIRCULATION_KAFKA_BOOTSTRAP": services.bootstrap,
                   "CIRCULATION_SCHEMA_REGISTRY_URL": services.registry_url}
    process = await asyncio.create_subprocess_exec(
        *CLI, "consume", contract.id, "--from-beginning", "--timeout", "60",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=environment)
    assert process.stdout is not None
    assert process.stderr is not None
    first = await asyncio.wait_for(process.stdout.readline(), 60)
    assert json.loads(first)["id"].startswith("delivery-")
    process.stdout.feed_eof()
    transport = process._transport  # type: ignore[attr-defined]
    transport.get_pipe_transport(1).close()  # the reader goes away, as `head -1` does
    said = await asyncio.wait_for(process.stderr.read(), 60)
    assert await asyncio.wait_for(process.wait(), 60) == 0, said.decode()
    assert b"Traceback" not in said
    async with clients.admin(settings) as admin:
        committed = await admin.list_consumer_group_offsets(
            f"subscriber.{contract.subscriber}.{contract.id}")
    assert sum(meta.offset for meta in committed.values()) < KILLED_AFTER, \
        "committed deliveries the reader never took"
