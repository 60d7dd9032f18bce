"""The principal's Kafka password goes to the schema registry only where nobody reads it on
the way: over https, or on the loopback interface."""

from __future__ import annotations

import pytest

from schemas.registry import RegistryError, SchemaRegistry
from streams.kafka import clients
from streams.settings import Settings

PASSWORD = "the-worker-s-scram-password"


def _worker(url: str, **registry: str) -> Settings:
    return Settings(schema_registry_url=url, security_protocol="SASL_SSL",
                    sasl_mechanism="SCRAM-SHA-512", sasl_username="bus-worker",
                    sasl_password=PASSWORD, **registry)  # type: ignore[arg-type]


def test_the_kafka_password_is_not_sent_to_a_plain_http_registry() -> None:
    # what `circulation render k8s` gives the workers by default
    with clients.schema_registry(_worker("http://schema-registry:8080/apis/ccompat/v7")) as r:
        assert r._http.auth is None


@pytest.mark.parametrize("url", ["https://schema-registry:8443/apis/ccompat/v7",
                                 "http://127.0.0.1:8081/apis/ccompat/v7",
                                 "http://localhost:8081/apis/ccompat/v7"])
def test_it_is_sent_over_https_or_loopback(url: str) -> None:
    with clients.schema_registry(_worker(url)) as registry:
        assert registry._http.auth is not None


def test_a_registry_credential_of_its_own_is_refused_over_plain_http() -> None:
    with pytest.raises(RegistryError, match="plain http") as refused:
        clients.schema_registry(_worker("http://schema-registry:8080/apis/ccompat/v7",
                                        schema_registry_username="bus-worker"))
    assert PASSWORD not in str(refused.value)
    with pytest.raises(RegistryError, match="plain http"):
        SchemaRegistry("http://10.0.0.7:8080", auth=("bus-worker", PASSWORD))
