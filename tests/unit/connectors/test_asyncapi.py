"""The AsyncAPI document: valid AsyncAPI 3.0 for the whole bus and for each flag, and saying what
the bus really writes (the catalog's schemas, the contracts' projections, the router's headers).

No broker: the contracts are the shipped examples, built in memory.
"""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from connectors.asyncapi import (
    AVRO_FORMAT,
    BusAddress,
    Scope,
    UnknownParty,
    document,
    entitling,
    scope,
)
from connectors.publisher import Publisher
from schemas.catalog import Catalog
from schemas.serde import AvroSerde
from streams.cli import app as cli
from streams.cli import asyncapi as asyncapi_cli
from streams.dev.synthetic import generate
from streams.kafka import clients
from streams.privacy.pseudonyms import Pseudonymiser
from streams.routing.delivery import DeliveryChannel, EventHeaders, extension_headers
from streams.settings import Settings
from streams.state import subjects
from streams.state.contract import Contract
from tests.unit.command_settings import strong_secret
from tests.unit.memory_registry import MemoryRegistry

CATALOG = Catalog.load()
ROOT = Path(__file__).resolve().parents[3]
SCHEMA = ROOT / "tests" / "fixtures" / "asyncapi" / "asyncapi-3.0.0.schema.json"
ADDRESS = BusAddress("kafka-1.bus.example:9093,kafka-2.bus.example:9093",
                     "https://registry.bus.example/apis/ccompat/v7")
NOW = datetime(2026, 10, 1, tzinfo=UTC)


def _contracts() -> list[Contract]:
    return [Contract.checked(yaml.safe_load(path.read_text(encoding="utf-8")), CATALOG)
            for path in sorted((ROOT / "deploy" / "contracts").glob("*.yaml"))]


CONTRACTS = _contracts()


@cache
def _validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))


def _problems(found: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in _validator().iter_errors(found)]


def _document(provider: str | None = None, subscriber: str | None = None) -> dict[str, Any]:
    chosen = scope(CATALOG, CONTRACTS, provider=provider, subscriber=subscriber)
    return document(CATALOG, CONTRACTS, chosen, ADDRESS, "1.2.3")


def _contract(contract_id: str) -> Contract:
    return next(c for c in CONTRACTS if c.id == contract_id)


def test_the_schema_refuses_a_broken_document() -> None:
    broken = copy.deepcopy(_document())
    broken["channels"]["provider.cnaf.quotient_familial"]["address"] = 7
    del broken["info"]["version"]
    assert len(_problems(broken)) >= 2


def test_the_whole_bus_is_valid_asyncapi_with_every_provider_and_contract() -> None:
    found = _document()
    assert _problems(found) == []
    expected = {*CATALOG.provider_topics(), *(c.delivery_topic for c in CONTRACTS)}
    assert set(found["channels"]) == expected
    assert set(found["components"]["securitySchemes"]) == {
        *(f"provider.{p.replace('_', '-')}" for p in CATALOG.providers()),
        *(f"subscriber.{c.subscriber}" for c in CONTRACTS)}
    assert found["servers"]["bus"]["host"] == "kafka-1.bus.example:9093"
    assert found["servers"]["bus"]["bindings"]["kafka"]["schemaRegistryUrl"] == \
        ADDRESS.registry_url


def test_a_provider_gets_its_topics_with_the_catalog_schemas() -> None:
    found = _document(provider="cnaf")
    assert _problems(found) == []
    assert set(found["channels"]) == {"provider.cnaf.quotient_familial"}
    message = found["components"]["messages"]["provider.cnaf.quotient_familial"]
    assert message["payload"] == {"schemaFormat": AVRO_FORMAT,
                                  "schema": CATALOG.dataset("quotient_familial").latest.raw}
    headers = message["headers"]["properties"]
    assert headers["ce_source"]["const"] == "cnaf"
    assert headers["ce_type"]["const"] == "quotient_familial"
    assert headers["ce_subject"]["pattern"] == r"^sr1_[0-9a-f]{64}$"
    operation = found["operations"]["send.provider.cnaf.quotient_familial"]
    assert operation["action"] == "send"
    assert operation["security"] == [{"$ref": "#/components/securitySchemes/provider.cnaf"}]
    assert found["components"]["securitySchemes"] == {
        "provider.cnaf": {"type": "scramSha512",
                          "description": found["components"]["securitySchemes"]
                          ["provider.cnaf"]["description"]}}


def test_a_provider_id_with_an_underscore_connects_as_its_hyphenated_principal() -> None:
    found = _document(provider="france_travail")
    assert _problems(found) == []
    assert set(found["components"]["securitySchemes"]) == {"provider.france-travail"}
    assert set(found["channels"]) == {f"provider.france_travail.{d.id}"
                                      for d in CATALOG.datasets_of("france_travail")}


@pytest.mark.parametrize("contract_id", [c.id for c in CONTRACTS])
def test_a_subscriber_gets_its_delivery_topic_with_the_projected_schema(contract_id: str) -> None:
    contract = _contract(contract_id)
    found = _document(subscriber=contract.subscriber)
    assert _problems(found) == []
    assert set(found["channels"]) == {contract.delivery_topic}
    assert found["channels"][contract.delivery_topic]["bindings"]["kafka"][
        "topicConfiguration"]["retention.ms"] == contract.retention_ms
    messages = found["components"]["messages"]
    delivery = messages[f"{contract.id}.delivery"]
    assert delivery["payload"] == {"schemaFormat": AVRO_FORMAT,
                                   "schema": contract.delivery_schema(CATALOG)}
    headers = delivery["headers"]["properties"]
    assert headers["ce_contract"]["const"] == contract.id
    assert headers["ce_purpose"]["const"] == contract.purpose
    assert headers["ce_legalbasis"]["const"] == contract.legal_basis
    assert "ce_expiresat" in delivery["headers"]["required"]
    erasure = messages[f"{contract.id}.erasure_notice"]
    assert erasure["payload"]["schema"] == CATALOG.bus_record("erasure_notice").latest.raw
    assert erasure["headers"]["properties"]["ce_type"]["const"] == "erasure_notice"
    principal = f"subscriber.{contract.subscriber}"
    assert found["components"]["securitySchemes"][principal]["type"] == "scramSha512"
    operation = found["operations"][f"receive.{contract.delivery_topic}"]
    assert operation["security"] == [{"$ref": f"#/components/securitySchemes/{principal}"}]
    assert len(operation["messages"]) == 2


def test_a_union_delivery_schema_stays_valid_and_names_both_datasets() -> None:
    contract = _contract("ugap-marches-publics")
    found = _document(subscriber="ugap")
    schema = found["components"]["messages"][f"{contract.id}.delivery"]["payload"]["schema"]
    assert isinstance(schema, list)
    assert len(schema) == 2
    headers = found["components"]["messages"][f"{contract.id}.delivery"]["headers"]
    assert set(headers["properties"]["ce_type"]["enum"]) == set(contract.datasets)
    assert headers["properties"]["ce_subject"]["pattern"] == "^[0-9]{9}$"


def test_the_delivery_headers_are_those_the_router_writes() -> None:
    contract = _contract("lyon-cantine-2026")
    channel = DeliveryChannel(
        contract.delivery_topic, contract.delivery_subject, timedelta(days=1),
        Pseudonymiser(strong_secret()).for_subscriber(contract.subscriber),
        extension_headers(contract))
    event = EventHeaders("e-1", "cnaf", "quotient_familial", "sr1_" + "0" * 64,
                         b"2026-10-01T00:00:00Z")
    written = {name for name, _ in channel.headers(event, "id", b"ps2_x", b"2026-10-02")}
    described = _document(subscriber=contract.subscriber)["components"]["messages"][
        f"{contract.id}.delivery"]["headers"]
    assert set(described["properties"]) == written
    assert written - {"ce_time"} == set(described["required"])


def test_the_subscriber_document_tells_the_webhook_signature_headers() -> None:
    description = _document(subscriber="ville-de-lyon")["info"]["description"]
    for header in ("webhook-id", "webhook-timestamp", "webhook-signature", "delivery.webhook"):
        assert header in description
    assert "webhook-id" not in _document(provider="cnaf")["info"]["description"]


def test_both_flags_give_the_provider_and_the_subscriber_alone() -> None:
    found = _document(provider="cnous", subscriber="departement-du-rhone")
    assert _problems(found) == []
    assert set(found["channels"]) == {"provider.cnous.statut_etudiant_boursier",
                                      "deliver.departement-du-rhone.cd69-aide-etudiants"}


@pytest.mark.parametrize(("flag", "given"), [("provider", "caf-1850012345678"),
                                             ("subscriber", "1850712345678 90")])
def test_an_unknown_party_is_refused_by_its_option_never_repeating_the_value(
        flag: str, given: str) -> None:
    with pytest.raises(UnknownParty) as refused:
        scope(CATALOG, CONTRACTS, **{flag: given})
    assert str(refused.value).startswith(f"--{flag}:")
    assert given not in str(refused.value)


def test_a_contract_whose_retention_ran_out_after_its_end_is_left_out() -> None:
    ended = Contract.checked({**_contract("lyon-cantine-2026").to_file(),
                              "valid_from": date(2020, 1, 1), "valid_until": date(2020, 12, 31)},
                             CATALOG)
    running = _contract("ugap-marches-publics")
    assert entitling([ended, running], NOW) == [running]
    pending = _contract("cd69-aide-etudiants")
    assert entitling([pending], datetime(2026, 1, 1, tzinfo=UTC)) == [pending]


def test_nobody_in_scope_still_gives_a_valid_document() -> None:
    found = document(CATALOG, [], Scope((), ()), ADDRESS, "1")
    assert _problems(found) == []
    assert found["channels"] == {}


def test_the_command_prints_the_document_and_refuses_an_unknown_subscriber(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncapi_cli, "with_store",
                        lambda _operation: {c.id: c for c in CONTRACTS})
    runner = CliRunner()
    printed = runner.invoke(cli, ["asyncapi", "--subscriber", "ugap"])
    assert printed.exit_code == 0, printed.output
    found = json.loads(printed.stdout)
    assert _problems(found) == []
    assert set(found["channels"]) == {_contract("ugap-marches-publics").delivery_topic}
    refused = runner.invoke(cli, ["asyncapi", "--subscriber", "nobody-here"])
    assert refused.exit_code == 2
    assert "--subscriber" in refused.stderr
    assert "nobody-here" not in refused.stderr


def _conforms(headers: list[tuple[str, bytes]], described: dict[str, Any]) -> list[str]:
    """What in ``headers`` (as written to Kafka) the described headers' schema refuses."""
    decoded = {name: value.decode() for name, value in headers}
    assert len(decoded) == len(headers), "a header written twice"
    closed = {**described, "additionalProperties": False}
    return [e.message for e in jsonschema.Draft7Validator(closed).iter_errors(decoded)]


def test_what_the_publisher_writes_is_what_the_provider_document_says(tmp_path: Path) -> None:
    event = {**next(iter(generate("quotient_familial", 1, 7))), "source": "msa"}
    settings = Settings(cache_dir=tmp_path, subject_secret=strong_secret())
    publisher = Publisher(settings, CATALOG, MemoryRegistry())  # type: ignore[arg-type]
    prepared = publisher.prepare(event)
    message = _document(provider="msa")["components"]["messages"][prepared.topic]
    assert _conforms(prepared.headers, message["headers"]) == []
    key = message["bindings"]["kafka"]["key"]
    assert jsonschema.Draft7Validator(key).is_valid(prepared.key.decode())


def test_what_the_router_writes_is_what_the_subscriber_document_says() -> None:
    contract = _contract("lyon-cantine-2026")
    pseudonyms = Pseudonymiser(strong_secret()).for_subscriber(contract.subscriber)
    channel = DeliveryChannel(contract.delivery_topic, contract.delivery_subject,
                              contract.retention_ms * timedelta(milliseconds=1), pseudonyms,
                              extension_headers(contract))
    event = EventHeaders("e-1", "cnaf", "quotient_familial", "sr1_" + "0" * 64,
                         b"2026-10-01T00:00:00Z")
    pseudonym = pseudonyms.pseudonym("sr1_" + "0" * 64).encode()
    written = channel.headers(event, channel.delivery_id(event), pseudonym, channel.expiry(NOW))
    message = _document(subscriber=contract.subscriber)["components"]["messages"][
        f"{contract.id}.delivery"]
    assert _conforms(written, message["headers"]) == []
    assert jsonschema.Draft7Validator(message["bindings"]["kafka"]["key"]).is_valid(
        pseudonym.decode())


class _Producer:
    """Keeps what is sent, acknowledging at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[tuple[str, bytes]]]] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, _value: bytes, key: bytes,
                   headers: list[tuple[str, bytes]]) -> asyncio.Future[None]:
        self.sent.append((topic, headers))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_an_erasure_notice_is_what_the_subscriber_document_says(
        monkeypatch: pytest.MonkeyPatch) -> None:
    contract = _contract("lyon-cantine-2026")
    producer = _Producer()
    monkeypatch.setattr(clients, "producer", lambda _settings: producer)
    pseudonym = Pseudonymiser(strong_secret()).for_subscriber(contract.subscriber).pseudonym(
        "sr1_" + "0" * 64)
    serde = AvroSerde(MemoryRegistry())  # type: ignore[arg-type]
    await subjects.send_erasure_notices(Settings(), serde, CATALOG, contract, [pseudonym],
                                        "consent_withdrawn")
    ((topic, headers),) = producer.sent
    document_ = _document(subscriber=contract.subscriber)
    assert topic in document_["channels"]
    message = document_["components"]["messages"][f"{contract.id}.erasure_notice"]
    assert _conforms(headers, message["headers"]) == []


def test_a_subscriber_is_told_the_consumer_groups_the_broker_allows_it() -> None:
    contract = _contract("lyon-cantine-2026")
    group = _document(subscriber=contract.subscriber)["operations"][
        f"receive.{contract.delivery_topic}"]["bindings"]["kafka"]["groupId"]
    allowed = jsonschema.Draft7Validator(group)
    assert allowed.is_valid(f"subscriber.{contract.subscriber}.{contract.id}")
    for other in (f"subscriber.{contract.subscriber}", f"subscriber.{contract.subscriber}-x.a",
                  f"subscriber.{contract.subscriber}x.a", f"sink.{contract.subscriber}.a"):
        assert not allowed.is_valid(other), other


@pytest.mark.parametrize("datasets", [{"quotient_familial": ["retired_field"]},
                                      {"retired_dataset": ["statut"]}])
def test_a_contract_the_catalog_outgrew_keeps_only_its_erasure_notices(
        datasets: dict[str, list[str]]) -> None:
    recorded = Contract.model_validate({**_contract("lyon-cantine-2026").to_file(),
                                        "id": "lyon-ancien", "datasets": datasets})
    contracts = [recorded, _contract("ugap-marches-publics")]
    found = document(CATALOG, contracts, scope(CATALOG, contracts), ADDRESS, "1")
    assert _problems(found) == []
    channel = found["channels"][recorded.delivery_topic]
    assert set(channel["messages"]) == {"lyon-ancien.erasure_notice"}
    assert "no longer matches the catalog" in channel["description"]
    assert "ugap-marches-publics.delivery" in found["components"]["messages"]


def test_a_credential_in_the_registry_url_is_left_out_of_the_document() -> None:
    address = BusAddress("kafka.example:9093",
                         "https://reader:s3cret@registry.example:8443/apis/ccompat/v7")
    assert address.registry_url == "https://registry.example:8443/apis/ccompat/v7"
    assert BusAddress("k:1", "http://registry:8081/x").registry_url == "http://registry:8081/x"


def test_a_document_made_from_a_development_cluster_says_it_has_no_authentication() -> None:
    plain = BusAddress("127.0.0.1:9092", "http://127.0.0.1:8081/apis/ccompat/v7", "PLAINTEXT")
    chosen = scope(CATALOG, CONTRACTS, provider="cnaf")
    found = document(CATALOG, CONTRACTS, chosen, plain, "1.2.3")
    assert _problems(found) == []
    server = found["servers"]["bus"]
    assert server["protocol"] == "kafka"
    assert server["security"] == []
    assert "PLAINTEXT" in server["description"]
    assert "SASL_SSL" not in server["description"]
    secured = _document(provider="cnaf")["servers"]["bus"]
    assert secured["protocol"] == "kafka-secure"
    assert "SASL_SSL" in secured["description"]
    assert secured["security"]
