"""Contracts recorded before the ``delivery`` section existed still load, and one naming a
webhook keeps it through the broker and the registry.

A contract record written with the contract schema's version 1 (as every contract applied
before version 2) is produced to a contracts topic of this test's own, beside one applied now
with a webhook; the store reads both back with the latest schema.
"""

from __future__ import annotations

import fastavro

from schemas.catalog import Catalog
from schemas.codec import encode, frame, from_json
from schemas.registration import value_subject
from schemas.registry import SchemaRegistry
from streams.kafka import clients
from streams.kafka.admin import ensure_topics
from streams.kafka.topics import CONTRACTS
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.contract_store import ContractStore, contracts_topic_spec
from tests.conftest import Services

CATALOG = Catalog.load()


def _contract(suffix: str, **extra: object) -> Contract:
    return Contract.checked({
        "id": f"evolution-{suffix}", "subscriber": f"ville-de-test-{suffix}",
        "subscriber_siret": "21690123100011", "purpose": "test d'évolution",
        "legal_basis": "test", "datasets": {"quotient_familial": ["quotient_familial"]},
        "consent": "not_required", "population": "all", "retention": "P1D",
        "valid_from": "2026-01-01", **extra,
    }, CATALOG)


async def test_a_v1_contract_and_a_webhook_contract_load_side_by_side(
        settings: Settings, services: Services, topic_name: str) -> None:
    suffix = topic_name.rsplit(".", 1)[-1]
    old = _contract(f"{suffix}-v1")
    new = _contract(f"{suffix}-v2", delivery={"webhook": {
        "url": "https://hooks.example.fr/in", "secret_env": "TEST_HOOK_SECRET"}})
    v1 = CATALOG.bus_record("contract").version(1)
    with SchemaRegistry(services.registry_url) as registry:
        v1_id = registry.register(value_subject(CONTRACTS), v1.text)
        await ensure_topics(settings, [contracts_topic_spec(settings, topic_name)])
        parsed = fastavro.parse_schema(v1.raw)
        written = {k: v for k, v in old.to_record().items() if k != "delivery"}
        producer = clients.producer(settings)
        await producer.start()
        try:
            await producer.send_and_wait(topic_name, frame(v1_id, encode(
                parsed, from_json(parsed, written))), key=old.id.encode())
        finally:
            await producer.stop()
        store = ContractStore(settings, registry, CATALOG, topic=topic_name)
        await store.apply([new])
        loaded = await store.load()
    assert loaded == {old.id: old, new.id: new}
    assert loaded[old.id].delivery is None
    assert loaded[new.id].delivery == new.delivery
