"""Gateway tokens on the real broker: made by ``credentials create --token``, only their hash on
``bus.tokens``, followed by a running gateway's directory, a new one replacing the last."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

from aiokafka import TopicPartition

from schemas.serde import AvroSerde
from streams.kafka import clients
from streams.kafka.admin import end_offsets
from streams.kafka.topics import TOKENS
from streams.security.principals import Principal
from streams.security.tokens import TokenDirectory, token_hash
from streams.settings import Settings
from tests.conftest import Services

CLI = [sys.executable, "-m", "streams.cli"]


def _create_token(services: Services, principal: str) -> dict[str, str]:
    made = subprocess.run(
        [*CLI, "credentials", "create", principal, "--token"], capture_output=True, text=True,
        timeout=60, check=False,
        env={"CIRCULATION_KAFKA_BOOTSTRAP": services.bootstrap,
             "CIRCULATION_SCHEMA_REGISTRY_URL": services.registry_url,
             "PATH": "/usr/bin:/bin"})
    assert made.returncode == 0, made.stderr
    (line,) = made.stdout.splitlines()
    return dict(json.loads(line))


async def _topic_values(settings: Settings, since: dict[TopicPartition, int]) -> list[bytes]:
    consumer = clients.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await end_offsets(settings, [TOKENS])
        consumer.assign(list(ends))
        for partition in ends:
            consumer.seek(partition, since.get(partition, 0))
        found: list[bytes] = []
        while [p for p, end in ends.items() if await consumer.position(p) < end]:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                found += [m.value for m in messages if m.value is not None]
        return found
    finally:
        await consumer.stop()


async def _until_principal(directory: TokenDirectory, token: str,
                           expected: Principal | None) -> None:
    for _ in range(100):
        if directory.principal(token) == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the running directory did not see the token as {expected}")


async def test_a_token_made_while_a_gateway_runs_opens_it_and_a_new_one_closes_the_old(
        settings: Settings, services: Services) -> None:
    subscriber = f"subscriber.tokens-{uuid.uuid4().hex[:8]}"
    before = await end_offsets(settings, [TOKENS])
    directory = TokenDirectory(settings, AvroSerde(clients.schema_registry(settings)))
    await directory.start()
    try:
        first = _create_token(services, subscriber)
        assert first["principal"] == subscriber
        who = Principal.parse(subscriber)
        await _until_principal(directory, first["token"], who)
        second = _create_token(services, subscriber)
        assert second["token"] != first["token"]
        await _until_principal(directory, second["token"], who)
        await _until_principal(directory, first["token"], None)
    finally:
        await directory.stop()
    written = b"".join(await _topic_values(settings, before))
    for made in (first, second):
        assert made["token"].encode() not in written, "a token itself reached the topic"
        assert token_hash(made["token"]).encode() in written


async def test_a_gateway_started_later_reads_every_token_before_answering(
        settings: Settings, services: Services) -> None:
    provider = "provider.cnaf"
    made = _create_token(services, provider)
    directory = TokenDirectory(settings, AvroSerde(clients.schema_registry(settings)))
    await directory.start()
    try:
        assert directory.principal(made["token"]) == Principal.parse(provider)
    finally:
        await directory.stop()


def test_a_component_gets_no_token(services: Services) -> None:
    refused = subprocess.run(
        [*CLI, "credentials", "create", "bus-worker", "--token"], capture_output=True,
        text=True, timeout=60, check=False,
        env={"CIRCULATION_KAFKA_BOOTSTRAP": services.bootstrap,
             "CIRCULATION_SCHEMA_REGISTRY_URL": services.registry_url, "PATH": "/usr/bin:/bin"})
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert "only providers and subscribers hold gateway tokens" in refused.stderr
