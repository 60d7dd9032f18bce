"""``circulation asyncapi`` on the real broker and registry, after ``contracts apply``.

The contracts are recorded on a contracts topic of this test's own under ids unique to the run
(as in ``test_contracts_kafka.py``); the document must be valid AsyncAPI 3.0 and its payloads the
very schemas the registry holds under each topic's subject.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from schemas.catalog import Catalog
from schemas.registration import value_subject
from schemas.registry import SchemaRegistry
from streams.cli import app as cli
from streams.cli import asyncapi as asyncapi_cli
from streams.cli import contracts as contracts_cli
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.contract_store import ContractStore
from tests.conftest import Services

CATALOG = Catalog.load()
ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "fixtures" / "asyncapi" / "asyncapi-3.0.0.schema.json"


def _applied_file(tmp_path: Path, name: str, suffix: str) -> Contract:
    """A shipped example contract under an id unique to this run, written to ``tmp_path``."""
    document = yaml.safe_load((ROOT / "deploy" / "contracts" / f"{name}.yaml").read_text("utf-8"))
    document["id"] = f"{document['id']}-{suffix}"
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), "utf-8")
    return Contract.checked(document, CATALOG)


def _valid(found: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    assert [e.message[:200] for e in validator.iter_errors(found)] == []


def test_the_document_follows_the_applied_contracts_and_the_registry(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Settings, topic_name: str,
        services: Services) -> None:
    monkeypatch.setattr(contracts_cli, "settings", lambda: settings)
    monkeypatch.setattr(asyncapi_cli, "settings", lambda: settings)
    monkeypatch.setattr(contracts_cli, "ContractStore",
                        functools.partial(ContractStore, topic=topic_name))
    suffix = topic_name.rsplit(".", 1)[-1]
    lyon = _applied_file(tmp_path, "lyon-cantine-2026", suffix)
    ugap = _applied_file(tmp_path, "ugap-marches-publics", suffix)
    runner = CliRunner()
    applied = runner.invoke(cli, ["contracts", "apply", str(tmp_path)])
    assert applied.exit_code == 0, applied.output

    printed = runner.invoke(cli, ["asyncapi", "--subscriber", lyon.subscriber])
    assert printed.exit_code == 0, printed.output
    found = json.loads(printed.stdout)
    _valid(found)
    assert set(found["channels"]) == {lyon.delivery_topic}
    messages = found["components"]["messages"]
    with SchemaRegistry(services.registry_url) as registry:
        assert registry.lookup(lyon.delivery_subject,
                               messages[f"{lyon.id}.delivery"]["payload"]["schema"]) is not None
        assert registry.lookup(lyon.erasure_subject,
                               messages[f"{lyon.id}.erasure_notice"]["payload"]["schema"]
                               ) is not None

        whole = json.loads(runner.invoke(cli, ["asyncapi"]).stdout)
        _valid(whole)
        assert {lyon.delivery_topic, ugap.delivery_topic,
                *CATALOG.provider_topics()} == set(whole["channels"])
        for topic in CATALOG.provider_topics():
            payload = whole["components"]["messages"][topic]["payload"]["schema"]
            assert registry.lookup(value_subject(topic), payload) is not None


def test_an_unknown_provider_or_subscriber_fails_naming_the_option(
        monkeypatch: pytest.MonkeyPatch, settings: Settings, topic_name: str) -> None:
    monkeypatch.setattr(contracts_cli, "settings", lambda: settings)
    monkeypatch.setattr(asyncapi_cli, "settings", lambda: settings)
    monkeypatch.setattr(contracts_cli, "ContractStore",
                        functools.partial(ContractStore, topic=topic_name))
    runner = CliRunner()
    for flag in ("--provider", "--subscriber"):
        refused = runner.invoke(cli, ["asyncapi", flag, "caf"])
        assert refused.exit_code == 2, refused.output
        assert refused.stdout == ""
        assert flag in refused.stderr
