"""Retention on the real broker: aligning a topic sets the keys the bus owns and leaves the others
as an operator set them, and ``circulation retention report`` passes on a bus as ``contracts
apply`` left it, and fails, naming the topic and key, once a retention was changed by hand.

Each test records its contracts on a contracts topic of its own (as ``test_contracts_kafka``
does), and the report reads that topic instead of ``bus.contracts``: the bus's own topics and
the provider topics are those the session provisioned.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from typer.testing import CliRunner, Result

from schemas.catalog import Catalog
from schemas.registry import SchemaRegistry
from streams.cli import app
from streams.cli import retention as retention_cli
from streams.kafka import clients
from streams.kafka.admin import described_configs, end_offsets, ensure_topics
from streams.kafka.topics import CONSENTS, POPULATION, provider_topic_spec
from streams.ops.retention_report import wanted_topics
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.contract_store import ContractStore, ContractStoreError
from tests.conftest import Services
from tests.integration.test_contracts_kafka import DAY, _deployed

CATALOG = Catalog.load()
FOREIGN = {"max.message.bytes": "2000000"}
"""A key the bus does not own, set by an operator for a reason of their own."""


@pytest.fixture
def store(services: Services, settings: Settings, topic_name: str) -> Iterator[ContractStore]:
    with SchemaRegistry(services.registry_url) as registry:
        yield ContractStore(settings, registry, CATALOG, topic=topic_name)


def _contract(store: ContractStore) -> Contract:
    """A shipped example contract under an id as unique as the store's topic."""
    return _deployed("lyon-cantine-2026", store.topic.rsplit(".", 1)[-1])


async def _set_by_hand(settings: Settings, topic: str, config: dict[str, str]) -> None:
    """What an operator does with Kafka's own tools: SET keys on a topic, nothing else; return
    once the broker has them in force (the controller answers before the broker applies it)."""
    admin = clients.cluster_admin(settings)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
        for k, v in config.items()])
    for future in admin.incremental_alter_configs([resource], request_timeout=30).values():
        future.result()
    deadline = asyncio.get_running_loop().time() + 30
    while not config.items() <= (await _config(settings, topic)).items():
        assert asyncio.get_running_loop().time() < deadline, f"{topic}: {config} not in force"
        await asyncio.sleep(0.1)


async def _config(settings: Settings, topic: str) -> dict[str, str | None]:
    async with clients.admin(settings) as admin:
        return (await described_configs(admin, [topic]))[topic]


async def test_contracts_apply_restores_the_retention_and_keeps_a_key_set_by_hand(
        store: ContractStore, settings: Settings) -> None:
    contract = _contract(store)
    await store.apply([contract])
    await _set_by_hand(settings, contract.delivery_topic, {**FOREIGN, "retention.ms": str(DAY)})
    await store.apply([contract])  # recorded already: its topic is aligned, not created
    config = await _config(settings, contract.delivery_topic)
    assert config["retention.ms"] == str(contract.retention_ms)
    assert config["max.message.bytes"] == FOREIGN["max.message.bytes"]


async def test_provisioning_restores_the_retention_and_keeps_a_key_set_by_hand(
        settings: Settings, topic_name: str) -> None:
    wanted = provider_topic_spec(settings, topic_name)
    await ensure_topics(settings, [wanted])
    await _set_by_hand(settings, topic_name, {**FOREIGN, "retention.ms": str(DAY)})
    assert await ensure_topics(settings, [wanted]) == []
    config = await _config(settings, topic_name)
    assert config["retention.ms"] == wanted.config["retention.ms"] != str(DAY)
    assert config["max.message.bytes"] == FOREIGN["max.message.bytes"]


def _report(monkeypatch: pytest.MonkeyPatch, settings: Settings, contracts_topic: str,
            *args: str) -> Result:
    monkeypatch.setattr(retention_cli, "settings", lambda: settings)
    monkeypatch.setattr(retention_cli, "wanted_topics",
                        functools.partial(wanted_topics, contracts_topic=contracts_topic))
    return CliRunner(env={"COLUMNS": "300"}).invoke(app, ["retention", "report", *args])


def test_the_report_passes_after_apply_and_fails_on_a_retention_changed_by_hand(
        monkeypatch: pytest.MonkeyPatch, store: ContractStore, settings: Settings) -> None:
    contract = _contract(store)
    asyncio.run(store.apply([contract]))
    passed = _report(monkeypatch, settings, store.topic)
    assert passed.exit_code == 0, passed.output
    assert contract.delivery_topic in passed.output

    asyncio.run(_set_by_hand(settings, contract.delivery_topic, {"retention.ms": str(DAY)}))
    failed = _report(monkeypatch, settings, store.topic)
    assert failed.exit_code == 1, failed.output
    (line,) = [row for row in failed.output.splitlines() if "differs" in row]
    assert contract.delivery_topic in line
    assert "retention.ms" in line

    document = json.loads(_report(monkeypatch, settings, store.topic, "--json").stdout)
    assert document["passes"] is False
    assert all(set(check) == {"topic", "key", "wanted", "effective", "status"}
               for check in document["checks"])
    wrong = [c for c in document["checks"] if c["status"] != "ok"]
    assert wrong == [{"topic": contract.delivery_topic, "key": "retention.ms",
                      "wanted": str(contract.retention_ms), "effective": str(DAY),
                      "status": "differs"}]
    keys = {(c["topic"], c["key"]) for c in document["checks"]}
    assert {("bus.audit", "retention.ms"), ("bus.dlq", "retention.ms"),
            ("bus.audit.checkpoints", "retention.ms")} <= keys
    assert all((topic, "retention.ms") in keys for topic in CATALOG.provider_topics())

    asyncio.run(store.apply([contract]))
    assert _report(monkeypatch, settings, store.topic).exit_code == 0


async def _delete(settings: Settings, topic: str) -> None:
    async with clients.admin(settings) as admin:
        await admin.delete_topics([topic])


def test_the_report_names_a_delivery_topic_that_is_gone(
        monkeypatch: pytest.MonkeyPatch, store: ContractStore, settings: Settings) -> None:
    contract = _contract(store)
    asyncio.run(store.apply([contract]))
    asyncio.run(_delete(settings, contract.delivery_topic))
    result = _report(monkeypatch, settings, store.topic, "--json")
    assert result.exit_code == 1
    missing = [c for c in json.loads(result.stdout)["checks"] if c["status"] == "missing"]
    assert {c["topic"] for c in missing} == {contract.delivery_topic}
    assert {c["key"] for c in missing} == set(contract.topic_config())
    assert all(c["effective"] is None for c in missing)


def test_an_unreachable_cluster_is_one_line_and_exit_2(
        monkeypatch: pytest.MonkeyPatch, settings: Settings, topic_name: str) -> None:
    nowhere = settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})
    result = _report(monkeypatch, nowhere, topic_name)
    assert result.exit_code == 2
    assert "error: the cluster at 127.0.0.1:1 could not be asked" in result.output


async def test_a_recorded_contract_never_becomes_opt_out(store: ContractStore) -> None:
    contract = _contract(store)
    assert contract.consent != "opt_out"
    await store.apply([contract])
    with pytest.raises(ContractStoreError, match="cannot become opt_out"):
        await store.apply([Contract.checked({**contract.to_file(), "consent": "opt_out"},
                                            CATALOG)])


def test_expire_history_dry_run_writes_nothing(monkeypatch: pytest.MonkeyPatch,
                                               settings: Settings) -> None:
    monkeypatch.setattr(retention_cli, "settings", lambda: settings)
    ends = asyncio.run(end_offsets(settings, [CONSENTS, POPULATION]))
    result = CliRunner().invoke(app, ["retention", "expire-history", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("would tombstone ")
    assert asyncio.run(end_offsets(settings, [CONSENTS, POPULATION])) == ends
