"""Consumer lag on the real broker: four subscriber groups driven into each Burrow state on
purpose, judged by ``circulation lag --json`` and by the ``/metrics`` of ``lag --serve``.

The test owns a delivery topic of its own (``deliver.<run-unique subscriber>.lag``, two
partitions), a producer writing to both partitions all along, and four consumer groups of that
subscriber:

- ``keeps-up`` reads everything and commits after every fetch → OK;
- ``falls-behind`` commits, but reads one record per partition every ~0.3 s while the producer
  writes 20 per second per partition → WARN;
- ``stops-committing`` stays in its group and keeps polling, but commits no more → STALL;
- ``stops`` leaves the group (consumer closed) with records still coming → STOP.

The commands filter on the run's subscriber, so other tests' groups never interfere; the topic
is deleted at the end (the probe ignores offsets left on topics that no longer exist).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Services
from tests.lag_groups import LagGroups

CLI = [sys.executable, "-m", "streams.cli"]
WINDOW = ["--window", "4", "--samples", "5"]
EXPECTED = {"keeps-up": "OK", "falls-behind": "WARN", "stops-committing": "STALL",
            "stops": "STOP"}
CODES = {"OK": 0, "WARN": 1, "STALL": 2, "STOP": 3, "ERR": 4}


@dataclass
class Scenario:
    services: Services
    groups: LagGroups
    stop_committing: asyncio.Event = field(default_factory=asyncio.Event)
    leave: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def subscriber(self) -> str:
        return self.groups.subscriber

    @property
    def topic(self) -> str:
        return self.groups.topic

    def group(self, role: str) -> str:
        return self.groups.group(role)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CIRCULATION_KAFKA_BOOTSTRAP": self.services.bootstrap,
                "CIRCULATION_SCHEMA_REGISTRY_URL": self.services.registry_url,
                "CIRCULATION_LOG_FORMAT": "json", "COLUMNS": "200"}

    def drive(self) -> None:
        """The producer (20 records per second per partition) and the four groups; the group
        that stops comes last."""
        groups = self.groups
        for drive in (groups.produce(size=100, interval=0.05), groups.keeps_up("keeps-up"),
                      groups.falls_behind(),
                      groups.keeps_up("stops-committing", self.stop_committing),
                      groups.keeps_up("stops", self.leave, leave=True)):
            self.tasks.append(asyncio.create_task(drive))


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Wait until ``check`` holds; Kafka errors (a fresh broker may not have a group
    coordinator yet) count as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await check():
                return
        except KafkaError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.fixture
async def scenario(services: Services) -> AsyncIterator[Scenario]:
    run = uuid.uuid4().hex[:10]
    state = Scenario(services, LagGroups({"bootstrap_servers": services.bootstrap},
                                         f"lagtest-{run}", f"deliver.lagtest-{run}.lag"))
    admin = AIOKafkaAdminClient(bootstrap_servers=services.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(state.topic, num_partitions=2, replication_factor=1)])
        state.drive()

        async def all_committed() -> bool:
            for role in EXPECTED:
                offsets = await admin.list_consumer_group_offsets(state.group(role))
                if not any(meta.offset > 0 for meta in offsets.values()):
                    return False
            return True

        await _eventually(all_committed, 60, "every group's first commit")
        state.stop_committing.set()
        state.leave.set()
        stopper = state.tasks[-1]
        await asyncio.wait_for(asyncio.shield(stopper), 30)

        async def everyone_behind() -> bool:
            consumer = AIOKafkaConsumer(bootstrap_servers=services.bootstrap)
            await consumer.start()
            try:
                ends = await consumer.end_offsets([TopicPartition(state.topic, p)
                                                   for p in (0, 1)])
            finally:
                await consumer.stop()
            for role in ("stops-committing", "stops"):
                offsets = await admin.list_consumer_group_offsets(state.group(role))
                if any(ends[tp] <= meta.offset for tp, meta in offsets.items()):
                    return False
            return True

        await _eventually(everyone_behind, 30, "records past the last commits")
        yield state
    finally:
        for task in state.tasks:
            task.cancel()
        for task in state.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await admin.delete_topics([state.topic])
        await admin.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _statuses_from_metrics(client: httpx.AsyncClient, url: str) -> dict[str, int]:
    try:
        answer = await client.get(url)
    except httpx.TransportError:
        return {}
    statuses = {}
    for family in text_string_to_metric_families(answer.text):
        if family.name == "circulation_consumer_group_status":
            statuses.update({s.labels["group"]: int(s.value) for s in family.samples})
    return statuses


async def test_each_burrow_state_from_lag_json_and_metrics(scenario: Scenario) -> None:
    port = _free_port()
    server = await asyncio.create_subprocess_exec(
        *CLI, "lag", "--subscriber", scenario.subscriber, "--serve", str(port),
        "--bind", "127.0.0.1", *WINDOW, env=scenario.env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        check = await asyncio.create_subprocess_exec(
            *CLI, "lag", "--subscriber", scenario.subscriber, "--json", *WINDOW,
            env=scenario.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(check.communicate(), 90)
        assert check.returncode == 1, err.decode()  # STALL and STOP: the check fails
        document = json.loads(out)
        statuses = {g["group"]: g["status"] for g in document["groups"]}
        assert statuses == {scenario.group(role): status for role, status in EXPECTED.items()}
        assert document["status"] == "STOP"
        assert [g["status"] for g in document["groups"]] == ["STOP", "STALL", "WARN", "OK"]
        by_role = {g["group"].rsplit(".", 1)[-1]: g for g in document["groups"]}
        for role, group in by_role.items():
            assert group["subscriber"] == scenario.subscriber
            assert group["samples"] == 5
            assert [(p["topic"], p["partition"]) for p in group["partitions"]] == [
                (scenario.topic, 0), (scenario.topic, 1)], role
        assert by_role["stops"]["members"] == 0
        assert by_role["stops-committing"]["members"] == 1
        for role in ("falls-behind", "stops-committing", "stops"):
            assert by_role[role]["lag_records"] > 0
            assert by_role[role]["lag_seconds"] > 0  # age of the oldest unconsumed record
        for partition in by_role["stops"]["partitions"]:
            assert partition["lag_records"] == (partition["log_end_offset"]
                                                - partition["committed_offset"])

        url = f"http://127.0.0.1:{port}/metrics"
        want = {scenario.group(role): CODES[status] for role, status in EXPECTED.items()}
        async with httpx.AsyncClient(timeout=5) as client:
            seen: dict[str, int] = {}

            async def metrics_agree() -> bool:
                nonlocal seen
                seen = await _statuses_from_metrics(client, url)
                return seen == want

            try:
                await _eventually(metrics_agree, 60, "the /metrics statuses")
            except AssertionError:
                pytest.fail(f"/metrics says {seen}, expected {want}")
            text = (await client.get(url)).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        lagging = {(s.labels["group"], s.labels["partition"]): s.value
                   for s in families["circulation_consumer_lag_records"].samples}
        assert lagging[(scenario.group("stops"), "0")] > 0
        ages = {s.labels["group"]: s.value
                for s in families["circulation_consumer_lag_seconds"].samples
                if s.labels["topic"] == scenario.topic and s.labels["partition"] == "1"}
        assert ages[scenario.group("stops")] > 0
        assert {s.labels["subscriber"]
                for s in families["circulation_consumer_group_status"].samples} == {
            scenario.subscriber}
    finally:
        server.terminate()
        _, err = await asyncio.wait_for(server.communicate(), 30)
    assert server.returncode == 1, err.decode()  # stopped by SIGTERM, groups still STALL/STOP
