"""A worker that cannot route stops, with its reason, instead of sitting on a dead agent.

Faust keeps a process up when its agent raises: nothing more is routed, the failed batch is never
acknowledged, and even the shutdown hangs waiting for it. ``circulation worker`` exits with status
70 instead, so that its supervisor restarts it and the batch is replayed. The failure driven
here is the one that stopped a real run: the head of an audit chain written under a schema id
the registry does not have. It runs on a private stack, since it writes unreadable records to
``bus.audit``.
"""

from __future__ import annotations

import asyncio
import struct
import subprocess
import sys
from pathlib import Path

from aiokafka import AIOKafkaProducer

from connectors.publisher import Publisher
from schemas.catalog import Catalog
from streams.dev.synthetic import generate
from streams.kafka import clients
from streams.kafka.admin import topic_partitions
from streams.kafka.topics import AUDIT
from streams.settings import Settings
from streams.worker.app import EXIT_ROUTING_FAILED, prepare_topics
from tests.integration.private_stack import private_settings, run_cli

pytest_plugins = ("tests.integration.private_stack",)

UNKNOWN_SCHEMA_ID = 987_654


async def _break_audit_heads(settings: Settings) -> None:
    """Append to every audit partition a record framed with a schema id nobody registered."""
    await prepare_topics(settings, Catalog.load())
    producer = AIOKafkaProducer(**clients.connection_options(settings), acks="all")
    await producer.start()
    try:
        for tp in await topic_partitions(settings, [AUDIT]):
            framed = b"\x00" + struct.pack(">I", UNKNOWN_SCHEMA_ID) + b"\x02"
            await producer.send_and_wait(AUDIT, framed, partition=tp.partition)
    finally:
        await producer.stop()


async def _publish_one(settings: Settings) -> None:
    event = next(iter(generate("attestation_vigilance", 1, seed=4242)))
    async with Publisher(settings) as publisher:
        await publisher.publish(event)


def test_worker_exits_with_reason_when_audit_head_is_unreadable(
        stack_env: dict[str, str], tmp_path: Path) -> None:
    assert run_cli(stack_env, "local", "up").returncode == 0
    settings = private_settings(stack_env)
    asyncio.run(_break_audit_heads(settings))
    asyncio.run(_publish_one(settings))

    worker = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"], cwd=tmp_path, timeout=180,
        env={**stack_env, "CIRCULATION_LOG_FORMAT": "json"}, capture_output=True, text=True,
        check=False)
    output = worker.stdout + worker.stderr
    assert worker.returncode == EXIT_ROUTING_FAILED, output[-3000:]
    assert "routing failed: the worker exits" in output
    assert "head of audit chain" in output
    assert f"no schema with id {UNKNOWN_SCHEMA_ID}" in output
