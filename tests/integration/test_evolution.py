"""Schema evolution through the registry: v1 and v2 records on one topic, read by both readers.

One ``statut_etudiant_boursier`` event is prepared with v1 and one with v2 (which adds the
nullable ``montant_annuel_centimes``). Their prepared values are produced to a topic of this
test's own, read back, and each is decoded with its writer schema fetched by id from the registry
and resolved to a v1 and to a v2 reader schema.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
import uuid
from datetime import date
from typing import Any, cast

import fastavro
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from connectors.publisher import OutgoingEvent, Publisher, PublishRefused
from schemas.catalog import Catalog
from schemas.codec import DecodeError, decode, unframe
from schemas.registration import register_versions
from schemas.registry import SchemaRegistry
from streams.dev.synthetic import generate
from streams.kafka.admin import ensure_topics
from streams.kafka.topics import TopicSpec
from tests.conftest import Services

BOURSIER = Catalog.load().dataset("statut_etudiant_boursier")
BOURSIER_TOPIC = "provider.cnous.statut_etudiant_boursier"
NEW_FIELD = "montant_annuel_centimes"
Schema = dict[str, Any]
READERS = {n: cast(Schema, fastavro.parse_schema(BOURSIER.version(n).raw)) for n in (1, 2)}


def _event(seed: int, **data: Any) -> dict[str, Any]:
    event = next(iter(generate("statut_etudiant_boursier", 1, seed)))
    event["id"] = str(uuid.uuid4())
    event["data"] = {**event["data"], **data}
    return event


def _writer(registry_url: str, schema_id: int) -> Schema:
    answer = httpx.get(f"{registry_url.rstrip('/')}/schemas/ids/{schema_id}", timeout=10)
    answer.raise_for_status()
    return cast(Schema, fastavro.parse_schema(json.loads(answer.json()["schema"])))


async def _produce_and_read(services: Services, topic: str,
                            prepared: list[OutgoingEvent]) -> dict[str, bytes]:
    await ensure_topics(services.settings(), [TopicSpec(topic, 1, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=services.bootstrap, acks="all")
    await producer.start()
    try:
        for outgoing in prepared:
            await producer.send_and_wait(topic, outgoing.value, key=outgoing.key,
                                         headers=outgoing.headers)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=services.bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    values: dict[str, bytes] = {}
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while len(values) < len(prepared) and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    values[dict(record.headers)["ce_id"].decode()] = record.value
    finally:
        await consumer.stop()
    return values


async def test_v1_and_v2_records_read_with_either_reader(services: Services,
                                                          topic_name: str) -> None:
    settings = services.settings()
    with SchemaRegistry(services.registry_url) as registry:  # as an operator does first
        register_versions(registry, f"{BOURSIER_TOPIC}-value", BOURSIER.versions)
    old = _event(11)
    new = _event(12, **{NEW_FIELD: 471_500})
    publisher = Publisher(settings)
    with pytest.raises(PublishRefused) as refused:
        publisher.prepare(new, version=1)  # v1 does not know the new field
    assert refused.value.field == "data"  # an unknown key is not repeated: it may be anything
    assert refused.value.reason.startswith("an unknown field (known: ")
    prepared = [publisher.prepare(old, version=1), publisher.prepare(new, version=2)]
    assert {p.topic for p in prepared} == {BOURSIER_TOPIC}
    values = await _produce_and_read(services, topic_name, prepared)
    assert set(values) == {old["id"], new["id"]}

    ids = {event_id: struct.unpack(">bI", value[:5]) for event_id, value in values.items()}
    assert ids[old["id"]][0] == ids[new["id"]][0] == 0, "Confluent magic byte"
    assert ids[old["id"]][1] != ids[new["id"]][1], "each record names its own writer schema"
    writers = {event_id: _writer(services.registry_url, schema_id)
               for event_id, (_, schema_id) in ids.items()}
    assert _fields(writers[old["id"]]) == _fields(READERS[1])
    assert _fields(writers[new["id"]]) == _fields(READERS[2])

    def read(event_id: str, reader: int) -> dict[str, Any]:
        schema_id, payload = unframe(values[event_id])
        assert schema_id == ids[event_id][1]
        datum = decode(writers[event_id], READERS[reader], payload)
        plain = fastavro.schemaless_reader(io.BytesIO(payload), writers[event_id],
                                           READERS[reader])
        assert datum == plain, "the codec reads like plain fastavro"
        return dict(datum)

    old_data = {**old["data"],
                "date_debut_droits": date.fromisoformat(old["data"]["date_debut_droits"]),
                "date_fin_droits": date.fromisoformat(old["data"]["date_fin_droits"])}
    new_data = {**new["data"],
                "date_debut_droits": date.fromisoformat(new["data"]["date_debut_droits"]),
                "date_fin_droits": date.fromisoformat(new["data"]["date_fin_droits"])}

    assert read(old["id"], 1) == old_data
    assert read(new["id"], 2) == new_data
    # An old reader on a new record: the new field is dropped, the rest is intact.
    v2_as_v1 = read(new["id"], 1)
    assert NEW_FIELD not in v2_as_v1
    assert v2_as_v1 == {k: v for k, v in new_data.items() if k != NEW_FIELD}
    # A new reader on an old record: the new field takes its default, None.
    v1_as_v2 = read(old["id"], 2)
    assert NEW_FIELD in v1_as_v2
    assert v1_as_v2[NEW_FIELD] is None
    assert v1_as_v2 == {**old_data, NEW_FIELD: None}

    # Reading a record with the wrong writer schema is an error, not silent garbage.
    _, payload = unframe(values[new["id"]])
    with pytest.raises(DecodeError):
        decode(writers[old["id"]], READERS[1], payload)


def _fields(schema: dict[str, Any]) -> list[str]:
    return [f["name"] for f in schema["fields"]]
