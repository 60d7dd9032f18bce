"""Contracts on the real broker and registry: apply, re-apply, update, revoke, and the CLI.

Each test records its contracts on a contracts topic of its own (same configuration and record
format as ``bus.contracts``), so that routers and other runs never see them, and gives them ids
unique to the run, so that delivery topics and registry subjects never collide either.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
import yaml
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from typer.testing import CliRunner

from schemas.catalog import Catalog
from schemas.codec import decode, to_json, unframe
from schemas.registration import value_subject
from schemas.registry import SchemaRegistry, canonical
from streams.cli import contracts as contracts_cli
from streams.kafka import clients
from streams.kafka.admin import existing_topics, topic_partitions
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.contract_store import ContractNotFound, ContractStore, ContractStoreError
from tests.conftest import Services

CATALOG = Catalog.load()
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "contracts"
DAY = 86_400_000


def _deployed(name: str, suffix: str, **changes: Any) -> Contract:
    """A shipped example contract under an id unique to this run."""
    document = yaml.safe_load((DEPLOY / f"{name}.yaml").read_text(encoding="utf-8"))
    document.update(id=f"{document['id']}-{suffix}", **changes)
    return Contract.checked(document, CATALOG)


@pytest.fixture
def suffix(topic_name: str) -> str:
    return topic_name.rsplit(".", 1)[-1]


@pytest.fixture
def registry(services: Services) -> Iterator[SchemaRegistry]:
    with SchemaRegistry(services.registry_url) as client:
        yield client


@pytest.fixture
def store(settings: Settings, registry: SchemaRegistry, topic_name: str) -> ContractStore:
    return ContractStore(settings, registry, CATALOG, topic=topic_name)


async def _topic_config(settings: Settings, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(**clients.connection_options(settings))
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)])
        ((code, message, _, _, entries),) = response.resources
        assert code == 0, message
        return {entry[0]: entry[1] for entry in entries}
    finally:
        await admin.close()


async def _records(settings: Settings, topic: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) on ``topic``, read to its end offsets."""
    consumer = AIOKafkaConsumer(**clients.connection_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await topic_partitions(settings, [topic])
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[tuple[bytes, bytes]] = []
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                found += [(r.key, r.value) for r in batch]
        return found
    finally:
        await consumer.stop()


def _delivery_config(config: dict[str, str]) -> dict[str, str]:
    return {k: config[k] for k in ("cleanup.policy", "retention.ms", "segment.ms")}


async def test_apply_creates_the_topic_registers_the_projection_and_records_the_contract(
        store: ContractStore, settings: Settings, registry: SchemaRegistry, suffix: str,
        services: Services) -> None:
    contract = _deployed("lyon-cantine-2026", suffix)
    (applied,) = await store.apply([contract])
    assert (applied.outcome, applied.topic_created) == ("created", True)

    config = await _topic_config(settings, contract.delivery_topic)
    assert _delivery_config(config) == {"cleanup.policy": "delete",
                                        "retention.ms": str(90 * DAY), "segment.ms": str(DAY)}
    assert (len(await topic_partitions(settings, [contract.delivery_topic]))
            == settings.topic_partitions)

    assert registry.versions(contract.delivery_subject) == [1]
    with SchemaRegistry(services.registry_url) as fresh:  # no cache: what the registry holds
        registered = fresh.schema(applied.schema_id)
    assert canonical(registered) == canonical(contract.delivery_schema(CATALOG))
    assert [f["name"] for f in registered["fields"]] == ["quotient_familial", "annee", "mois"]

    ((key, value),) = await _records(settings, store.topic)
    assert key == contract.id.encode()
    schema_id, payload = unframe(value)
    assert schema_id in [registry.register(value_subject(store.topic), v.text)
                         for v in CATALOG.bus_record("contract").versions.values()]
    reader = CATALOG.bus_record("contract").latest.parsed
    writer: Any = fastavro.parse_schema(registry.schema(schema_id))
    datum = decode(writer, reader, payload)
    assert Contract.from_record(to_json(reader, datum)) == contract
    assert await store.load() == {contract.id: contract}


async def test_applying_twice_changes_nothing(store: ContractStore, settings: Settings,
                                              registry: SchemaRegistry, suffix: str) -> None:
    contracts = [_deployed("lyon-cantine-2026", suffix), _deployed("ugap-marches-publics", suffix)]
    first = await store.apply(contracts)
    before = {
        c.id: (await _topic_config(settings, c.delivery_topic),
               registry.versions(c.delivery_subject))
        for c in contracts
    }
    records = sorted(await _records(settings, store.topic))
    assert len(records) == 2

    second = await store.apply(contracts)
    assert [a.outcome for a in second] == ["unchanged", "unchanged"]
    assert [a.topic_created for a in second] == [False, False]
    assert [a.schema_id for a in second] == [a.schema_id for a in first]
    after = {
        c.id: (await _topic_config(settings, c.delivery_topic),
               registry.versions(c.delivery_subject))
        for c in contracts
    }
    assert after == before
    assert all(versions == [1] for _, versions in after.values())
    assert sorted(await _records(settings, store.topic)) == records, "no record appended"
    assert await store.load() == {c.id: c for c in contracts}


async def test_a_multi_dataset_contract_registers_the_union_of_its_projections(
        store: ContractStore, registry: SchemaRegistry, suffix: str,
        services: Services) -> None:
    contract = _deployed("idfm-tarif-solidarite", suffix)
    (applied,) = await store.apply([contract])
    with SchemaRegistry(services.registry_url) as fresh:
        registered = fresh.schema(applied.schema_id)
    assert isinstance(registered, list)
    assert [r["circulation"]["dataset"] for r in registered] == [
        "complementaire_sante_solidaire", "statut_demandeur_emploi"]
    assert canonical(registered) == canonical(contract.delivery_schema(CATALOG))
    assert registry.versions(contract.delivery_subject) == [1]


async def test_changing_the_retention_updates_the_topic_not_the_schema(
        store: ContractStore, settings: Settings, registry: SchemaRegistry,
        suffix: str) -> None:
    original = _deployed("cd69-aide-etudiants", suffix)
    await store.apply([original])
    shorter = _deployed("cd69-aide-etudiants", suffix, retention="PT12H")
    (applied,) = await store.apply([shorter])
    assert applied.outcome == "updated"
    assert applied.previous == original
    config = await _topic_config(settings, shorter.delivery_topic)
    assert _delivery_config(config) == {"cleanup.policy": "delete",
                                        "retention.ms": str(12 * 3_600_000),
                                        "segment.ms": str(12 * 360_000)}
    assert registry.versions(shorter.delivery_subject) == [1]
    assert (await store.load())[shorter.id].retention == "PT12H"


async def test_revoke_records_the_revocation_for_good(store: ContractStore, suffix: str) -> None:
    contract = _deployed("lyon-cantine-2026", suffix)
    await store.apply([contract])
    revoked = await store.revoke(contract.id)
    shown = await store.get(contract.id)
    assert shown == revoked
    assert shown.revoked
    assert shown.revoked_at is not None
    assert not shown.is_active(shown.revoked_at.date())
    assert await store.revoke(contract.id) == revoked, "revoking again changes nothing"
    with pytest.raises(ContractStoreError, match="revoked"):
        await store.apply([contract])
    with pytest.raises(ContractNotFound):
        await store.revoke(f"absent-{suffix}")
    assert list(await store.load()) == [contract.id]


async def test_a_contract_never_changes_subscriber(store: ContractStore, suffix: str) -> None:
    contract = _deployed("lyon-cantine-2026", suffix)
    await store.apply([contract])
    with pytest.raises(ContractStoreError, match="subscriber"):
        await store.apply([_deployed("lyon-cantine-2026", suffix, subscriber="metropole-lyon")])


def test_the_command_line_applies_lists_shows_and_revokes(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Settings, topic_name: str,
        suffix: str) -> None:
    monkeypatch.setattr(contracts_cli, "settings", lambda: settings)
    monkeypatch.setattr(contracts_cli, "ContractStore",
                        functools.partial(ContractStore, topic=topic_name))
    contract = _deployed("lyon-cantine-2026", suffix)
    (tmp_path / "lyon.yaml").write_text(
        yaml.safe_dump(contract.to_file(), sort_keys=False, allow_unicode=True), "utf-8")
    runner = CliRunner(env={"COLUMNS": "300"})

    def run(*args: str) -> str:
        result = runner.invoke(contracts_cli.app, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    assert "created" in run("apply", str(tmp_path))
    assert "unchanged" in run("apply", str(tmp_path / "lyon.yaml"))
    assert contract.id in run("list", "--on", "2026-06-01", "--active")
    shown = json.loads(run("show", contract.id, "--format", "json"))
    assert Contract.checked(shown, CATALOG) == contract
    assert "revoked" in run("revoke", contract.id, "--yes")
    assert "already revoked" in run("revoke", contract.id, "--yes")
    assert yaml.safe_load(run("show", contract.id))["revoked"] is True
    assert contract.id not in run("list", "--on", "2026-06-01", "--active")
    refused = runner.invoke(contracts_cli.app, ["show", f"absent-{suffix}"])
    assert refused.exit_code == 1
    assert "no contract" in refused.output


def _variant(contract: Contract, **changes: Any) -> Contract:
    return Contract.checked({**contract.to_file(), **changes}, CATALOG)


async def _bus_as_it_is(store: ContractStore, settings: Settings, registry: SchemaRegistry,
                        contracts: list[Contract]) -> dict[str, Any]:
    """What apply may change: the recorded contracts, and each contract's topic and subject."""
    subjects = set(registry.subjects())
    topics = set(await existing_topics(settings, "deliver."))  # listing creates nothing
    sides = {}
    for contract in contracts:
        exists = contract.delivery_topic in topics
        config = _delivery_config(await _topic_config(settings, contract.delivery_topic)) \
            if exists else None
        versions = registry.versions(contract.delivery_subject) \
            if contract.delivery_subject in subjects else []
        sides[contract.id] = (config, versions)
    return {"records": sorted(await _records(settings, store.topic)), "sides": sides}


async def test_a_subscriber_id_stays_bound_to_its_siret(
        store: ContractStore, settings: Settings, registry: SchemaRegistry, suffix: str) -> None:
    lyon = _deployed("lyon-cantine-2026", suffix)
    await store.apply([lyon])
    await store.revoke(lyon.id)
    other = _variant(lyon, id=f"autre-{suffix}", subscriber_siret="22690001700014")
    before = await _bus_as_it_is(store, settings, registry, [lyon, other])
    with pytest.raises(ContractStoreError, match="bound to SIRET 21690123100011") as refused:
        await store.apply([other])
    assert lyon.subscriber in str(refused.value)
    assert await _bus_as_it_is(store, settings, registry, [lyon, other]) == before
    assert before["sides"][other.id] == (None, [])
    again = _variant(lyon, id=f"encore-{suffix}")
    (applied,) = await store.apply([again])
    assert applied.outcome == "created", "the same organisation may hold more contracts"


async def test_apply_refuses_two_sirets_for_one_subscriber_in_one_call(
        store: ContractStore, suffix: str) -> None:
    lyon = _deployed("lyon-cantine-2026", suffix)
    other = _variant(lyon, id=f"autre-{suffix}", subscriber_siret="22690001700014")
    with pytest.raises(ContractStoreError, match="bound to SIRET"):
        await store.apply([lyon, other])
    assert await store.load() == {}


async def test_a_contract_failing_late_leaves_the_bus_as_it_was(
        store: ContractStore, settings: Settings, registry: SchemaRegistry, suffix: str) -> None:
    """A schema the registry will refuse, last in the call: found before anything is written,
    and the same call completes once the registry accepts it."""
    updated = _deployed("cd69-aide-etudiants", suffix)
    await store.apply([updated])
    shorter = _deployed("cd69-aide-etudiants", suffix, retention="PT12H")
    new = _deployed("lyon-cantine-2026", suffix)
    refused = _deployed("ugap-marches-publics", suffix)
    registry.register(refused.delivery_subject, '"string"')
    registry.set_compatibility(refused.delivery_subject, "BACKWARD")
    contracts = [shorter, new, refused]
    before = await _bus_as_it_is(store, settings, registry, contracts)

    with pytest.raises(ContractStoreError, match=refused.id):
        await store.apply(contracts)
    assert await _bus_as_it_is(store, settings, registry, contracts) == before
    assert before["sides"][new.id] == (None, [])
    assert before["sides"][updated.id][0]["retention.ms"] == str(180 * DAY)

    registry.set_compatibility(refused.delivery_subject, "NONE")
    done = await store.apply(contracts)
    assert [a.outcome for a in done] == ["updated", "created", "created"]
    assert await store.load() == {c.id: c for c in contracts}
    config = _delivery_config(await _topic_config(settings, shorter.delivery_topic))
    assert config["retention.ms"] == str(12 * 3_600_000)
