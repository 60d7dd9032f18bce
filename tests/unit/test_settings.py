"""Settings: every variable keeps its name and default, the bus's and the local stack's apart.

The variables are the product's contract with the people who deploy it: a rename or a changed
default breaks their configuration silently, so each one is pinned here.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.dev.settings import LocalStackSettings
from streams.settings import Settings, default_cache_dir

BUS = {
    "CIRCULATION_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
    "CIRCULATION_SCHEMA_REGISTRY_URL": "http://127.0.0.1:8081/apis/ccompat/v7",
    "CIRCULATION_SECURITY_PROTOCOL": "PLAINTEXT",
    "CIRCULATION_SASL_MECHANISM": None,
    "CIRCULATION_SASL_USERNAME": None,
    "CIRCULATION_SASL_PASSWORD": None,
    "CIRCULATION_SSL_CAFILE": None,
    "CIRCULATION_SSL_CERTFILE": None,
    "CIRCULATION_SSL_KEYFILE": None,
    "CIRCULATION_SCHEMA_REGISTRY_USERNAME": None,
    "CIRCULATION_SCHEMA_REGISTRY_PASSWORD": None,
    "CIRCULATION_SCHEMA_REGISTRY_CAFILE": None,
    "CIRCULATION_IDENTITY_URL": None,
    "CIRCULATION_TOPIC_PARTITIONS": 3,
    "CIRCULATION_TOPIC_REPLICATION": 1,
    "CIRCULATION_PROVIDER_RETENTION": timedelta(days=7),
    "CIRCULATION_AUDIT_RETENTION": timedelta(days=365),
    "CIRCULATION_AUDIT_CHECKPOINTS_RETENTION": None,
    "CIRCULATION_DLQ_RETENTION": timedelta(days=90),
    "CIRCULATION_SUBJECT_SECRET": None,
    "CIRCULATION_SUBJECT_SECRET_FILE": None,
    "CIRCULATION_PSEUDONYM_SECRET": None,
    "CIRCULATION_PSEUDONYM_SECRET_FILE": None,
    "CIRCULATION_AUDIT_SIGNING_KEY_FILE": None,
    "CIRCULATION_AUDIT_CHECKPOINT_RECORDS": 1000,
    "CIRCULATION_AUDIT_CHECKPOINT_SECONDS": 60.0,
    "CIRCULATION_LOG_FORMAT": "auto",
    "CIRCULATION_LOG_LEVEL": "info",
    "CIRCULATION_METRICS_PORT": None,
    "CIRCULATION_METRICS_BIND": "0.0.0.0",
    "CIRCULATION_FETCH_MAX_WAIT_MS": 50,
    "CIRCULATION_WEBHOOK_TIMEOUT_S": 10.0,
    "CIRCULATION_WEBHOOK_ATTEMPTS": 8,
    "CIRCULATION_WEBHOOK_BACKOFF_S": 0.5,
    "CIRCULATION_WEBHOOK_BACKOFF_MAX_S": 60.0,
    "CIRCULATION_WEBHOOK_ALLOW_PRIVATE": False,
    "CIRCULATION_GATEWAY_MAX_BODY_BYTES": 1_048_576,
    "CIRCULATION_GATEWAY_MAX_BATCH_EVENTS": 500,
    "CIRCULATION_GATEWAY_IDEMPOTENCY_WINDOW_S": 900.0,
    "CIRCULATION_GATEWAY_MAX_SUBJECTS": 1000,
    "CIRCULATION_CACHE_DIR": default_cache_dir(),
    "CIRCULATION_STATE_DIR": None,
    "CIRCULATION_JOURNAL_DIR": None,
    "CIRCULATION_JOURNAL_COLLECTOR_SIRET": None,
    "CIRCULATION_JOURNAL_DEV_SIGN_IN": False,
}
LOCAL_STACK = {
    "CIRCULATION_CACHE_DIR": default_cache_dir(),
    "CIRCULATION_LOCAL_DATA_DIR": None,
    "CIRCULATION_LOCAL_KAFKA_VERSION": "4.1.1",
    "CIRCULATION_LOCAL_KAFKA_PORT": 9092,
    "CIRCULATION_LOCAL_CONTROLLER_PORT": 9093,
    "CIRCULATION_LOCAL_REGISTRY_VERSION": "3.0.9",
    "CIRCULATION_LOCAL_REGISTRY_PORT": 8081,
    "CIRCULATION_LOCAL_START_TIMEOUT": 120.0,
    "CIRCULATION_LOCAL_FETCH_TIMEOUT": 900.0,
    "CIRCULATION_JAVA_HOME": None,
    "CIRCULATION_LOCAL_KEYCLOAK_VERSION": "26.5.6",
    "CIRCULATION_LOCAL_IDENTITY_PORT": 8180,
    "CIRCULATION_LOCAL_IDENTITY_JAVA_HOME": None,
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in {*BUS, *LOCAL_STACK}:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env file


@pytest.mark.parametrize(("model", "expected"), [(Settings, BUS),
                                                 (LocalStackSettings, LOCAL_STACK)])
def test_every_variable_keeps_its_name_and_default(model: type, expected: dict[str, object]
                                                   ) -> None:
    settings = model()
    assert {f"CIRCULATION_{name.upper()}" for name in model.model_fields} == set(expected)
    for variable, default in expected.items():
        assert getattr(settings, variable.removeprefix("CIRCULATION_").lower()) == default


def test_the_local_stack_s_addresses_are_the_bus_defaults() -> None:
    local = LocalStackSettings().bus_settings()
    assert (local.kafka_bootstrap, local.schema_registry_url) == (
        BUS["CIRCULATION_KAFKA_BOOTSTRAP"], BUS["CIRCULATION_SCHEMA_REGISTRY_URL"])


def test_a_stack_on_other_ports_gives_its_own_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRCULATION_LOCAL_KAFKA_PORT", "29092")
    monkeypatch.setenv("CIRCULATION_LOCAL_REGISTRY_PORT", "28081")
    local = LocalStackSettings()
    assert local.bus_settings().kafka_bootstrap == "127.0.0.1:29092"
    assert local.bus_environment()["CIRCULATION_SCHEMA_REGISTRY_URL"] == (
        "http://127.0.0.1:28081/apis/ccompat/v7")
    assert Settings().kafka_bootstrap == "127.0.0.1:9092"  # the bus's own default stays put


def test_an_address_set_explicitly_wins_over_the_stack_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRCULATION_LOCAL_KAFKA_PORT", "29092")
    monkeypatch.setenv("CIRCULATION_KAFKA_BOOTSTRAP", "broker.example:9092")
    local = LocalStackSettings()
    assert local.bus_settings().kafka_bootstrap == "broker.example:9092"
    assert local.bus_environment()["CIRCULATION_KAFKA_BOOTSTRAP"] == "broker.example:9092"
    assert local.bus_settings().schema_registry_url == BUS["CIRCULATION_SCHEMA_REGISTRY_URL"]


@pytest.mark.parametrize(("value", "days"), [("P6M", 180), ("P1Y", 365), ("P3Y", 1095),
                                             ("P400D", 400)])
def test_an_audit_retention_within_the_cnil_span_is_taken(
        monkeypatch: pytest.MonkeyPatch, value: str, days: int) -> None:
    monkeypatch.setenv("CIRCULATION_AUDIT_RETENTION", value)
    settings = Settings()
    assert settings.audit_retention == timedelta(days=days)
    assert settings.checkpoints_retention() == timedelta(days=days)  # follows it when unset


@pytest.mark.parametrize("value", ["P179D", "PT1H", "P3Y1D", "P10Y"])
def test_an_audit_retention_outside_the_cnil_span_is_refused_by_name(
        monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CIRCULATION_AUDIT_RETENTION", value)
    with pytest.raises(ValidationError, match="CIRCULATION_AUDIT_RETENTION must be between"):
        Settings()


def test_checkpoints_are_never_kept_shorter_than_the_trail(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRCULATION_AUDIT_RETENTION", "P2Y")
    monkeypatch.setenv("CIRCULATION_AUDIT_CHECKPOINTS_RETENTION", "P1Y")
    with pytest.raises(ValidationError, match="CHECKPOINTS_RETENTION must not be shorter"):
        Settings()
    monkeypatch.setenv("CIRCULATION_AUDIT_CHECKPOINTS_RETENTION", "P3Y")
    assert Settings().checkpoints_retention() == timedelta(days=3 * 365)


@pytest.mark.parametrize("variable", ["CIRCULATION_PROVIDER_RETENTION",
                                      "CIRCULATION_DLQ_RETENTION"])
def test_a_zero_retention_is_refused(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "PT0S")
    with pytest.raises(ValidationError, match=variable.removeprefix("CIRCULATION_").lower()):
        Settings()
