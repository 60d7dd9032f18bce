"""Every Kafka client the bus builds, with one policy, so that no writer is weaker than another.

Producers wait for every in-sync replica (``acks=all``) and are idempotent: a send retried after
a lost acknowledgement is written once, so a delivery, an audit record, a consent or an erasure
notice is never doubled by the client itself, and records of one partition keep their order
through retries. Callers may tune batching and sizes; they cannot weaken durability.

The broker's own administration (SCRAM credentials, ACLs, incremental configurations) goes
through confluent-kafka's ``AdminClient``, which has those calls and aiokafka does not; it is
built from the same settings (:func:`cluster_admin`).

Consumers and admin clients only carry the connection and security settings; what a consumer
commits, and when, is its caller's decision (most of the bus's readers assign partitions and
never commit). The Faust app builds its own clients from the same settings
(:func:`streams.worker.app.broker_credentials`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.helpers import create_ssl_context
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from schemas.registry import SchemaRegistry, in_clear
from streams.kafka import record_reader
from streams.settings import Settings


def connection_options(settings: Settings) -> dict[str, object]:
    """Keyword arguments shared by every aiokafka client: where the cluster is, and how to
    authenticate and encrypt."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
            certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
            keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        )
    return options


DURABILITY = {"acks": "all", "enable_idempotence": True}
"""What every producer of the bus promises; a caller asking otherwise is a bug."""


def producer(settings: Settings, **tuning: Any) -> AIOKafkaProducer:
    """A producer under :data:`DURABILITY`; ``tuning`` sets batching and sizes only."""
    overridden = sorted(DURABILITY.keys() & tuning.keys())
    if overridden:
        raise TypeError(f"a bus producer's {', '.join(overridden)} cannot be changed")
    return AIOKafkaProducer(**connection_options(settings), **DURABILITY, **tuning)


def consumer(settings: Settings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer on the bus's cluster; without ``group_id`` it only reads what it assigns.
    A header name that is not UTF-8 does not stop it (:mod:`streams.kafka.record_reader`)."""
    record_reader.install()
    return AIOKafkaConsumer(*topics, **connection_options(settings), **options)


def admin_client(settings: Settings, **options: Any) -> AIOKafkaAdminClient:
    """An admin client on the bus's cluster, not started (for a long-lived owner)."""
    return AIOKafkaAdminClient(**connection_options(settings), **options)


def cluster_client(settings: Settings, **options: Any) -> AIOKafkaClient:
    """A bare cluster client, for requests the other clients do not expose (group listings)."""
    return AIOKafkaClient(**connection_options(settings), **options)


@asynccontextmanager
async def admin(settings: Settings, **options: Any) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client for the span of an ``async with``."""
    client = admin_client(settings, **options)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


def schema_registry(settings: Settings) -> SchemaRegistry:
    """A client of the bus's schema registry, with the principal's credential and CA.

    The Kafka credential stands in for the registry's only where the registry is reached over
    https (or on the loopback interface): sent to a plain http registry it would cross the
    network readable, for a registry that asks for none. Registry credentials set on their own
    are refused there by :class:`SchemaRegistry`."""
    auth = settings.registry_credentials()
    borrowed = settings.schema_registry_username is None \
        and settings.schema_registry_password is None
    if borrowed and in_clear(settings.schema_registry_url):
        auth = None
    return SchemaRegistry(settings.schema_registry_url, auth=auth,
                          cafile=settings.registry_cafile())


def librdkafka_options(settings: Settings) -> dict[str, str]:
    """The same connection and security settings, as librdkafka (confluent-kafka) names them."""
    options = {"bootstrap.servers": settings.kafka_bootstrap,
               "security.protocol": settings.security_protocol.lower()}
    if settings.sasl_mechanism:
        options["sasl.mechanism"] = settings.sasl_mechanism
        options["sasl.username"] = settings.sasl_username or ""
        options["sasl.password"] = (settings.sasl_password.get_secret_value()
                                    if settings.sasl_password else "")
    if settings.ssl_cafile:
        options["ssl.ca.location"] = str(settings.ssl_cafile)
    if settings.ssl_certfile:
        options["ssl.certificate.location"] = str(settings.ssl_certfile)
    if settings.ssl_keyfile:
        options["ssl.key.location"] = str(settings.ssl_keyfile)
    return options


def cluster_admin(settings: Settings) -> AdminClient:
    """confluent-kafka's admin client, for SCRAM credentials, ACLs and incremental configs."""
    return AdminClient({**librdkafka_options(settings), "client.id": "circulation-admin",
                        "log_level": 3})  # errors only: its notices are not the user's


def refusal(exc: KafkaException) -> str:
    """What the broker answered an admin request, by error name and message (a SCRAM or ACL
    refusal names the request, never a password)."""
    error = exc.args[0] if exc.args else None
    if error is None or not hasattr(error, "name"):
        return type(exc).__name__
    return f"{error.name()}: {error.str()}"
