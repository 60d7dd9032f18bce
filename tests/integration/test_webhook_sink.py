"""``circulation sink webhook``: every delivery arrives at a real HTTP endpoint, verified with
the ``standardwebhooks`` verifier, none twice with different ids, each partition in order;
through failures, throttling, timeouts, a kill and a restart, a spent retry budget (a dead
letter) and a 410.

Deliveries are written straight to the contract's delivery topic, as ``test_consume`` does.
The endpoint listens on 127.0.0.1, so the sink runs with the development setting that allows
private addresses.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import sys
import uuid
from collections import defaultdict
from typing import Any

import httpx
from aiokafka import TopicPartition

from connectors.sinks import sink_group
from connectors.webhook.signing import Signer
from connectors.webhook.sink import COMMIT_INTERVAL_S, run
from schemas.catalog import Catalog
from schemas.codec import to_json
from schemas.registry import SchemaRegistry
from schemas.serde import AvroSerde
from streams.kafka import clients
from streams.kafka.admin import end_offsets
from streams.kafka.topics import DLQ
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.contract_store import ContractStore
from tests.conftest import Services
from tests.integration.test_consume import PARTITIONS, _write_deliveries
from tests.integration.webhook_receiver import ACCEPT, Answer, Receiver, as_json

CATALOG = Catalog.load()
OLD = "whsec_" + base64.b64encode(b"old-lyon-secret-thirty-two-byte!").decode()
NEW = "whsec_" + base64.b64encode(b"new-lyon-secret-thirty-two-byte!").decode()
SECRETS = f"{OLD} {NEW}"
"""A rotation under way: the receiver already knows only the new secret."""
SECRET_ENV = "TEST_LYON_WEBHOOK_SECRET"
CLI = [sys.executable, "-m", "streams.cli"]
TIMEOUT_S = 1.0
CALL_S = 0.02
"""How long the endpoint takes to accept a call in the kill test."""


def _contract(url: str) -> Contract:
    return Contract.checked({
        "id": f"webhook-{uuid.uuid4().hex[:12]}", "subscriber": "ville-de-test",
        "subscriber_siret": "21690123100011", "purpose": "test du webhook",
        "legal_basis": "test", "datasets": {"quotient_familial": ["quotient_familial", "annee"]},
        "consent": "not_required", "population": "all", "retention": "P1D",
        "valid_from": "2026-01-01",
        "delivery": {"webhook": {"url": url, "secret_env": SECRET_ENV}},
    }, CATALOG)


def _sink_settings(settings: Settings, attempts: int = 20) -> Settings:
    return settings.model_copy(update={
        "webhook_allow_private": True, "webhook_timeout_s": TIMEOUT_S,
        "webhook_backoff_s": 0.05, "webhook_backoff_max_s": 2.0, "webhook_attempts": attempts})


def _troubled(number: int, event: dict[str, Any]) -> Answer:
    """Fails, throttles and times out at first, then now and then, else accepts."""
    if number < 3 or number % 11 == 5:
        return Answer(500)
    if number in (3, 4) or number % 13 == 7:
        return Answer(429, {"Retry-After": "1"})
    if number == 5 or number % 17 == 9:
        return Answer(500, delay=TIMEOUT_S + 0.5)
    return ACCEPT


async def _until(condition: Any, seconds: float, what: str) -> None:
    for _ in range(int(seconds * 10)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} within {seconds:.0f}s")


def _assert_all_arrived_in_order(receiver: Receiver, written: dict[str, tuple[int, int]]) -> None:
    """Every delivery accepted, each partition's in offset order (a re-sent one may come
    again after a restart, with its same id), every call verified, one id per event."""
    calls = receiver.calls
    assert calls.unverified == 0
    assert set(receiver.accepted_ids()) == set(written)
    ids_by_event: dict[str, set[str]] = defaultdict(set)
    bodies: dict[str, set[str]] = defaultdict(set)
    for webhook_id, event in calls.seen:
        ids_by_event[event["id"]].add(webhook_id)
        bodies[event["id"]].add(as_json(event))
    assert all(ids == {event} for event, ids in ids_by_event.items()), "an id changed"
    assert all(len(forms) == 1 for forms in bodies.values()), "a delivery changed on retry"
    first_seen: dict[int, list[int]] = defaultdict(list)
    for event_id in dict.fromkeys(receiver.accepted_ids()):
        partition, offset = written[event_id]
        first_seen[partition].append(offset)
    for partition, offsets in first_seen.items():
        assert offsets == sorted(offsets), f"partition {partition} delivered out of order"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _committed(settings: Settings, contract: Contract) -> int:
    async with clients.admin(settings) as admin:
        offsets = await admin.list_consumer_group_offsets(sink_group(contract.id))
    return sum(meta.offset for tp, meta in offsets.items()
               if tp.topic == contract.delivery_topic and meta.offset >= 0)


async def test_every_delivery_arrives_through_failures_throttling_and_timeouts(
        settings: Settings, services: Services) -> None:
    receiver = Receiver(NEW, _troubled)
    try:
        contract = _contract(receiver.url)
        written = await _write_deliveries(settings, services, contract, 30)
        stop = asyncio.Event()
        sink = asyncio.ensure_future(run(_sink_settings(settings), contract,
                                         Signer(SECRETS, SECRET_ENV), stop))
        await _until(lambda: set(receiver.accepted_ids()) >= set(written) or sink.done(), 120,
                     "every delivery did not arrive")
        if sink.done():
            await sink  # raises what stopped it
        await asyncio.sleep(0.5)  # the last delivery's commit
        stop.set()
        await asyncio.wait_for(sink, 30)
    finally:
        receiver.close()
    _assert_all_arrived_in_order(receiver, written)
    assert len(receiver.accepted_ids()) == len(written), "a delivery was accepted twice"
    assert len(receiver.calls.seen) > len(written) + 6, "the script's failures were not met"
    assert await _committed(settings, contract) == len(written)


async def test_a_sink_killed_mid_stream_and_restarted_loses_nothing(
        settings: Settings, services: Services) -> None:
    receiver = Receiver(NEW, lambda number, event: Answer(200, delay=CALL_S))
    contract = _contract(receiver.url)
    environment = _sink_environment(services)
    try:
        with SchemaRegistry(services.registry_url) as registry:
            await ContractStore(settings, registry, CATALOG).apply([contract])
        written = await _write_deliveries(settings, services, contract, 150, create=False)
        first = await asyncio.create_subprocess_exec(*CLI, "sink", "webhook", contract.id,
                                                     env=environment)
        await _until(lambda: len(receiver.accepted_ids()) >= 40, 60, "the sink did not start")
        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        await asyncio.sleep(5 * CALL_S)  # calls of the killed sink the endpoint still answers
        accepted_before_kill = len(receiver.accepted_ids())
        assert accepted_before_kill < len(written), "killed too late to matter"
        port = _free_port()
        second = await asyncio.create_subprocess_exec(
            *CLI, "sink", "webhook", contract.id,
            env={**environment, "CIRCULATION_METRICS_PORT": str(port)})
        await _until(lambda: set(receiver.accepted_ids()) >= set(written), 90,
                     "deliveries were lost after the restart")
        await asyncio.sleep(0.5)  # the last delivery's commit
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0
    finally:
        receiver.close()
    _assert_all_arrived_in_order(receiver, written)
    after_restart = len(receiver.accepted_ids()) - accepted_before_kill
    assert (f'circulation_webhook_deliveries_total{{contract="{contract.id}"}} '
            f'{float(after_restart)}') in scraped
    again = len(receiver.accepted_ids()) - len(written)
    bound = 3 * (int(COMMIT_INTERVAL_S / CALL_S) + 2)
    assert again <= bound, (f"{again} deliveries re-sent: at most those accepted since the "
                            f"last commit and the one in flight, per partition")


async def test_a_delivery_refused_past_the_budget_becomes_a_dead_letter(
        settings: Settings, services: Services) -> None:
    receiver = Receiver(NEW, lambda number, event: (
        Answer(500) if event["id"] == "delivery-4" else ACCEPT))
    try:
        contract = _contract(receiver.url)
        dlq_from = await end_offsets(settings, [DLQ], missing_ok=True)
        written = await _write_deliveries(settings, services, contract, 9)
        garbage = await _write_unreadable(settings, contract.delivery_topic)
        stop = asyncio.Event()
        sink = asyncio.ensure_future(run(_sink_settings(settings, attempts=3), contract,
                                         Signer(SECRETS, SECRET_ENV), stop))
        await _until(lambda: len(set(receiver.accepted_ids())) == 8, 60,
                     "the deliveries behind the refused one did not arrive")
        letters = await _dead_letters(settings, dlq_from, contract.delivery_topic, 2)
        stop.set()
        await asyncio.wait_for(sink, 30)
    finally:
        receiver.close()
    assert "delivery-4" not in receiver.accepted_ids()
    assert sum(1 for _, event in receiver.calls.seen if event["id"] == "delivery-4") == 3
    by_place = {(letter["origin_partition"], letter["origin_offset"]): letter
                for letter in letters}
    assert set(by_place) == {written["delivery-4"], garbage}
    refused = by_place[written["delivery-4"]]
    assert refused["field"] == "delivery.webhook.url"
    assert "accepted none of 3 calls (last answer: 500)" in refused["error"]
    assert "unreadable" not in by_place[garbage]["error"]  # a reason, never the value
    assert await _committed(settings, contract) == len(written) + 1


async def _write_unreadable(settings: Settings, topic: str) -> tuple[int, int]:
    """A record no delivery decoder can read, on partition 1: (partition, offset)."""
    producer = clients.producer(settings)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"unreadable", partition=1)
    finally:
        await producer.stop()
    return sent.partition, sent.offset


async def test_410_stops_the_sink_and_commits_nothing_past_it(
        settings: Settings, services: Services) -> None:
    receiver = Receiver(NEW, lambda number, event: Answer(410))
    contract = _contract(receiver.url)
    environment = _sink_environment(services)
    try:
        with SchemaRegistry(services.registry_url) as registry:
            await ContractStore(settings, registry, CATALOG).apply([contract])
        await _write_deliveries(settings, services, contract, 3, create=False)
        sink = await asyncio.create_subprocess_exec(
            *CLI, "sink", "webhook", contract.id, env=environment,
            stderr=asyncio.subprocess.PIPE)
        _, stderr = await asyncio.wait_for(sink.communicate(), 60)
    finally:
        receiver.close()
    assert sink.returncode == 3
    assert "410 Gone" in stderr.decode()
    assert receiver.accepted_ids() == []
    assert await _committed(settings, contract) == 0


async def test_after_a_410_the_sinks_group_reads_stop_in_lag(
        settings: Settings, services: Services) -> None:
    """An endpoint gone is an operator's problem: nobody reads the contract's topic any more,
    and ``circulation lag`` says STOP (exit 1) for the sink's group, with what is left."""
    receiver = Receiver(NEW, lambda number, event: ACCEPT if number < PARTITIONS
                        else Answer(410))
    contract = _contract(receiver.url)
    environment = _sink_environment(services)
    try:
        with SchemaRegistry(services.registry_url) as registry:
            await ContractStore(settings, registry, CATALOG).apply([contract])
        await _write_deliveries(settings, services, contract, PARTITIONS, create=False)
        sink = await asyncio.create_subprocess_exec(
            *CLI, "sink", "webhook", contract.id, env=environment,
            stderr=asyncio.subprocess.PIPE)
        await _until_committed(settings, contract, PARTITIONS)
        await _write_deliveries(settings, services, contract, PARTITIONS, create=False)
        _, stderr = await asyncio.wait_for(sink.communicate(), 60)
    finally:
        receiver.close()
    assert sink.returncode == 3, stderr.decode()
    check = await asyncio.create_subprocess_exec(
        *CLI, "lag", "--subscriber", contract.subscriber, "--json", "--window", "2",
        "--samples", "2", env=environment, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(check.communicate(), 60)
    assert check.returncode == 1, err.decode()
    (group,) = [g for g in json.loads(out)["groups"] if g["group"] == sink_group(contract.id)]
    assert group["status"] == "STOP", group["reason"]
    assert group["members"] == 0
    assert group["lag_records"] == PARTITIONS


async def _until_committed(settings: Settings, contract: Contract, total: int) -> None:
    for _ in range(300):
        if await _committed(settings, contract) >= total:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the sink did not commit {total} deliveries within 30s")


async def _dead_letters(settings: Settings, since: dict[TopicPartition, int], origin: str,
                        count: int) -> list[dict[str, Any]]:
    """The first ``count`` dead letters from ``origin`` written to bus.dlq after ``since``."""
    schema = CATALOG.bus_record("dead_letter").latest.parsed
    serde = AvroSerde(clients.schema_registry(settings))
    consumer = clients.consumer(settings, DLQ, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        for _ in range(300):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    tp = TopicPartition(record.topic, record.partition)
                    if record.offset < since.get(tp, 0):
                        continue
                    letter = to_json(schema, serde.decode(record.value, schema)[1])
                    if letter["origin_topic"] == origin:
                        found.append(letter)
            if len(found) >= count:
                return found
    finally:
        await consumer.stop()
    raise AssertionError(f"{len(found)} dead letters of {count} from {origin}")


def _sink_environment(services: Services) -> dict[str, str]:
    """A ``sink webhook`` process's environment: the session's bus, both secrets, and the
    development setting that lets it call the receiver on loopback."""
    return {**os.environ, SECRET_ENV: SECRETS,
            "CIRCULATION_KAFKA_BOOTSTRAP": services.bootstrap,
            "CIRCULATION_SCHEMA_REGISTRY_URL": services.registry_url,
            "CIRCULATION_WEBHOOK_ALLOW_PRIVATE": "true"}
