"""Each worker holds the state of its own partitions, and reads on from it after a restart.

On the real broker and registry:

- **Shares.** Each of the session's two workers holds exactly the state partitions of the
  provider partitions the group assigned it, and no other: together they hold every partition
  once.
- **Restore and restart.** A state follower given partition 0 holds the files of that
  partition's subjects and refuses to read another's; stopped, then started again on the same
  state directory after a release, it reads only the record written since (not the topics
  again), and the release is in force.
- **Co-partitioning.** A provider topic with another partition count than the state topics
  stops the worker before it routes, naming the topic.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest
import structlog
from aiokafka import AIOKafkaProducer

from streams.kafka import clients
from streams.kafka.admin import TopicError, ensure_topics
from streams.kafka.partitioning import subject_partition
from streams.kafka.topics import PROVIDER_PREFIX, TopicSpec
from streams.state.directory import Standing
from streams.state.directory_partitions import PartitionNotHeld
from streams.state.follower import StateFollower
from streams.state.subjects import resolve, set_population
from tests.integration.routing_harness import CATALOG, Bus

pytest_plugins = ("tests.integration.routing_harness",)

BOURSIER = "statut_etudiant_boursier"


def _held(log: Path) -> set[int] | None:
    """The state partitions a worker said last it holds."""
    held = None
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"state partitions held"' in line:
            held = set(json.loads(line)["partitions"])
    return held


async def test_each_worker_holds_the_state_of_its_own_partitions_only(bus: Bus) -> None:
    count = await bus.partition_count(BOURSIER)
    shares: dict[str, set[int]] = {}
    for _ in range(60):  # a rebalance in progress settles: ask again
        owned = await bus.workers.assignments(bus.settings)
        shares = {w.client_id: {tp.partition for tp in owned.get(w.client_id, set())
                                if tp.topic.startswith(PROVIDER_PREFIX)}
                  for w in bus.workers.workers}
        held = {w.client_id: _held(w.log) for w in bus.workers.workers}
        if held == shares and all(shares.values()):
            break
        await asyncio.sleep(0.5)
    else:
        pytest.fail(f"held {held} while assigned {shares}\n{bus.workers.report()}")
    first, second = shares.values()
    assert not first & second, "a state partition held by both workers"
    assert first | second == set(range(count)), "a state partition held by no worker"


async def test_a_follower_holds_its_partition_and_reads_on_after_a_restart(
        bus: Bus, tmp_path: Path) -> None:
    contract = bus.contract("state-restart", {BOURSIER: ["echelon"]}, population="enrolled")
    await bus.apply(contract)
    count = await bus.partition_count(BOURSIER)
    persons = await bus.people_on_every_partition(BOURSIER, per_partition=2)
    await set_population(bus.settings, contract,
                         resolve(bus.settings, [p.nir for p in persons]), True)
    settings = bus.settings.model_copy(update={"state_dir": tmp_path})
    place = {bus.reference(p): subject_partition(bus.reference(p), count) for p in persons}

    logs, follower = await _started(bus, settings)
    try:
        (restoring,) = [e for e in logs if e["event"] == "state partitions restoring"]
        assert restoring["rebuilt"] == [0], "a new state directory is built from the topics"
        for reference, partition in place.items():
            if partition == 0:
                assert follower.state.directory.file_of(reference, 0) == {
                    contract.id: Standing(enrolled=True)}
            else:
                with pytest.raises(PartitionNotHeld):
                    follower.state.directory.file_of(reference, partition)
    finally:
        await follower.stop()

    released = next(r for r, partition in place.items() if partition == 0)
    kept = next(r for r, partition in place.items() if partition == 0 and r != released)
    gone = next(p for p in persons if bus.reference(p) == released)
    await set_population(bus.settings, contract, resolve(bus.settings, [gone.nir]), False)
    logs, again = await _started(bus, settings)
    try:
        (restoring,) = [e for e in logs if e["event"] == "state partitions restoring"]
        assert (restoring["rebuilt"], restoring["records"]) == ([], 1), (
            "a restart reads only what was written since it stopped")
        assert again.state.directory.file_of(released, 0) == {}
        assert again.state.directory.file_of(kept, 0) == {contract.id: Standing(enrolled=True)}
    finally:
        await again.stop()


async def _started(bus: Bus, settings: Any) -> tuple[list[Any], StateFollower]:
    follower = StateFollower(settings, bus.serde, CATALOG)
    follower.hold([0])
    with structlog.testing.capture_logs() as logs:
        await follower.start(CATALOG.provider_topics())
    return logs, follower


async def test_a_provider_topic_of_another_partition_count_stops_the_worker(
        bus: Bus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.state import follower as follower_module  # the layout, as if the topic grew

    real = follower_module.topic_layout

    async def grown(settings: Any, topics: list[str]) -> dict[str, tuple[str, int]]:
        layout = await real(settings, topics)
        topic_id, count = layout[f"{PROVIDER_PREFIX}cnous.{BOURSIER}"]
        return {**layout, f"{PROVIDER_PREFIX}cnous.{BOURSIER}": (topic_id, count + 3)}

    monkeypatch.setattr(follower_module, "topic_layout", grown)
    follower = StateFollower(bus.settings.model_copy(update={"state_dir": tmp_path}),
                             bus.serde, CATALOG)
    with pytest.raises(TopicError, match=rf"provider\.cnous\.{BOURSIER} \(\d+\): every "
                                         "provider topic needs as many partitions"):
        await follower.start(CATALOG.provider_topics())
    assert not list(tmp_path.iterdir()), "nothing claimed before the check"


async def test_kafka_clients_place_a_subject_s_events_on_its_state_partition(bus: Bus) -> None:
    """The Java client's default partitioner and librdkafka's ``murmur2_random`` (what the
    README tells librdkafka providers to set) place a key where the bus looks for its state."""
    topic = f"test.partitioner.{uuid.uuid4().hex[:8]}"
    await ensure_topics(bus.settings, [TopicSpec(topic, 6, 1)])
    keys = [bus.reference(p) for p in await bus.people_on_every_partition(BOURSIER, 3)]
    placed: dict[str, int] = {}
    producer = confluent_kafka.Producer({**clients.librdkafka_options(bus.settings),
                                         "partitioner": "murmur2_random"})

    def delivered(error: Any, message: Any) -> None:
        assert error is None, error
        placed[message.key().decode()] = message.partition()

    for key in keys:
        producer.produce(topic, b"x", key=key.encode(), on_delivery=delivered)
    assert producer.flush(30) == 0
    assert placed == {key: subject_partition(key, 6) for key in keys}
    aio = AIOKafkaProducer(**clients.connection_options(bus.settings))
    await aio.start()
    try:
        for key in keys[:4]:
            sent = await aio.send_and_wait(topic, b"x", key=key.encode())
            assert sent.partition == subject_partition(key, 6), "aiokafka (Java's murmur2)"
    finally:
        await aio.stop()
