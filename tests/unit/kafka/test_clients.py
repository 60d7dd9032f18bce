"""The client factory: every producer of the bus waits for all replicas and is idempotent, and
no caller can build a weaker one."""

from __future__ import annotations

import pytest

from streams.kafka import clients
from streams.settings import Settings


@pytest.mark.parametrize("tuning", [{}, {"linger_ms": 2, "max_batch_size": 1 << 20}])
async def test_every_producer_waits_for_all_replicas_and_is_idempotent(
        tuning: dict[str, int]) -> None:
    producer = clients.producer(Settings(), **tuning)
    assert producer._sender._acks == -1  # aiokafka's form of acks="all"
    assert producer._txn_manager is not None  # what enable_idempotence=True sets up
    await producer.stop()


@pytest.mark.parametrize("weaker", [{"acks": 1}, {"enable_idempotence": False}])
def test_a_weaker_producer_is_refused(weaker: dict[str, object]) -> None:
    with pytest.raises(TypeError, match="cannot be changed"):
        clients.producer(Settings(), **weaker)


async def test_security_settings_reach_every_client() -> None:
    settings = Settings(kafka_bootstrap="kafka-1:9093", security_protocol="SASL_PLAINTEXT",
                        sasl_mechanism="SCRAM-SHA-512", sasl_username="bus-worker",
                        sasl_password="secret")  # type: ignore[arg-type]
    options = clients.connection_options(settings)
    assert options == {"bootstrap_servers": "kafka-1:9093", "security_protocol": "SASL_PLAINTEXT",
                       "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "bus-worker",
                       "sasl_plain_password": "secret"}
    consumer = clients.consumer(settings, "bus.audit")
    assert consumer._client._security_protocol == "SASL_PLAINTEXT"
    assert consumer._client._sasl_mechanism == "SCRAM-SHA-512"
