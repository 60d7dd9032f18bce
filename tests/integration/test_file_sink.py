"""``circulation sink files``: a contract's deliveries in one JSON-lines file per UTC day, on
the real broker: in order, only the contract's fields, each delivery once through a kill and
restarts, expired deliveries never written, and files whose deliveries all expired deleted by
the sink, each deletion in its own audit chain, which ``circulation audit verify`` checks.

Deliveries are written straight to the contract's delivery topic, as ``test_consume`` does,
with the event day and expiry the test needs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.files.day_files import contract_folder, day_file
from connectors.files.sink import FileSink, files_group
from connectors.sinks import sink_group
from schemas.catalog import Catalog
from schemas.codec import rfc3339_millis
from schemas.registry import SchemaRegistry
from streams.audit.chain import GENESIS, file_sink_chain
from streams.audit.trail import read_chains
from streams.kafka import clients
from streams.kafka.admin import end_offsets, topic_partitions
from streams.kafka.topics import DLQ
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.contract_store import ContractStore
from tests.conftest import Services
from tests.integration.test_consume import _write_deliveries
from tests.integration.test_webhook_sink import _dead_letters, _write_unreadable

CATALOG = Catalog.load()
CLI = [sys.executable, "-m", "streams.cli"]
FIELDS = {"quotient_familial", "annee"}
NOV_1 = datetime(2026, 11, 1, tzinfo=UTC)
NOV_2 = datetime(2026, 11, 2, tzinfo=UTC)
FAR = "2099-01-01T00:00:00Z"
PAST = "2026-01-01T00:00:00Z"


def _contract(retention: str = "P30D") -> Contract:
    return Contract.checked({
        "id": f"files-{uuid.uuid4().hex[:12]}", "subscriber": "ville-de-test",
        "subscriber_siret": "21690123100011", "purpose": "test des fichiers",
        "legal_basis": "test", "datasets": {"quotient_familial": sorted(FIELDS)},
        "consent": "not_required", "population": "all", "retention": retention,
        "valid_from": "2026-01-01",
    }, CATALOG)


async def _applied(settings: Settings, services: Services, retention: str = "P30D") -> Contract:
    contract = _contract(retention)
    with SchemaRegistry(services.registry_url) as registry:
        await ContractStore(settings, registry, CATALOG).apply([contract])
    return contract


async def _until(condition: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    for _ in range(int(seconds * 5)):
        if await condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} within {seconds:.0f}s")


async def _committed(settings: Settings, group: str, topic: str) -> int:
    """How many records of ``topic`` ``group`` has committed (its offsets summed)."""
    async with clients.admin(settings) as admin:
        offsets = await admin.list_consumer_group_offsets(group)
    return sum(meta.offset for tp, meta in offsets.items()
               if tp.topic == topic and meta.offset >= 0)


def _lines(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Every day file of ``folder`` by name, its lines parsed."""
    return {path.name: [json.loads(line) for line in path.read_text("utf-8").splitlines()]
            for path in sorted(folder.glob("*.jsonl"))}


def _ids(folder: Path) -> Counter[str]:
    return Counter(event["id"] for lines in _lines(folder).values() for event in lines)


async def _sink_until_committed(settings: Settings, contract: Contract, root: Path,
                                total: int, expiry_check_s: float = 60.0) -> FileSink:
    """Run a file sink in this process until its group committed ``total`` records."""
    sink = FileSink(settings, contract, root)
    stop = asyncio.Event()
    running = asyncio.ensure_future(sink.run(stop, expiry_check_s))

    async def committed() -> bool:
        if running.done():
            await running  # raises what stopped it
        return await _committed(settings, files_group(contract.id),
                                contract.delivery_topic) >= total

    try:
        await _until(committed, 90, "the sink did not commit every delivery")
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
    return sink


async def test_deliveries_land_in_their_day_s_file_in_order_with_only_the_contract_fields(
        settings: Settings, services: Services, tmp_path: Path) -> None:
    contract = await _applied(settings, services)
    dlq_from = await end_offsets(settings, [DLQ], missing_ok=True)
    written = await _write_deliveries(settings, services, contract, 60, create=False,
                                      attributes=lambda index: {
                                          "time": NOV_1 if index % 2 else NOV_2,
                                          "expiresat": FAR})
    expired = await _write_deliveries(settings, services, contract, 4, create=False, first=60,
                                      attributes=lambda index: {"time": NOV_1,
                                                                "expiresat": PAST})
    garbage = await _write_unreadable(settings, contract.delivery_topic)
    total = len(written) + len(expired) + 1
    await _sink_until_committed(settings, contract, tmp_path, total)

    folder = contract_folder(tmp_path, contract.id)
    files = _lines(folder)
    assert sorted(files) == ["2026-11-01.jsonl", "2026-11-02.jsonl"]
    assert sorted(p.name for p in folder.iterdir()) == [".lock", *sorted(files)]
    for name, day in (("2026-11-01.jsonl", NOV_1), ("2026-11-02.jsonl", NOV_2)):
        ids = [event["id"] for event in files[name]]
        expected = {f"delivery-{i}" for i in range(60) if (i % 2 == 1) == (day == NOV_1)}
        assert sorted(ids) == sorted(expected), f"{name}: not its day's deliveries, once each"
        by_partition: dict[int, list[int]] = defaultdict(list)
        for event_id in ids:
            partition, offset = written[event_id]
            by_partition[partition].append(offset)
        assert all(offsets == sorted(offsets) for offsets in by_partition.values()), \
            f"{name}: a partition's deliveries out of order"
        for event in files[name]:
            number = int(event["id"].removeprefix("delivery-"))
            assert event["data"] == {"quotient_familial": 500 + number, "annee": 2026}
            assert set(event["data"]) == FIELDS
            assert (event["time"], event["expiresat"], event["contract"]) == (
                rfc3339_millis(day), FAR, contract.id)
        assert stat.S_IMODE(day_file(folder, day.date()).stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not set(_ids(folder)) & set(expired), "an expired delivery was written"
    (letter,) = await _dead_letters(settings, dlq_from, contract.delivery_topic, 1)
    assert (letter["origin_partition"], letter["origin_offset"]) == garbage
    assert "unreadable" not in letter["error"]
    assert await _committed(settings, sink_group(contract.id),
                            contract.delivery_topic) == 0, "the webhook sink's group moved"


def _environment(services: Services) -> dict[str, str]:
    return {**os.environ, "CIRCULATION_KAFKA_BOOTSTRAP": services.bootstrap,
            "CIRCULATION_SCHEMA_REGISTRY_URL": services.registry_url}


async def _start(services: Services, contract: Contract, root: Path,
                 ) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI, "sink", "files", contract.id, "--dir", str(root), env=_environment(services))


async def _group_empty(settings: Settings, group: str) -> bool:
    async with clients.admin(settings) as admin:
        responses = await admin.describe_consumer_groups([group])
    return all(not described[5] for response in responses for described in response.groups)


async def _rewind(settings: Settings, contract: Contract) -> None:
    """Commit the file sink's group back to the topic's start, as if no commit had been made
    since the first delivery was written (the group has no member: its sink was stopped)."""
    group = files_group(contract.id)
    await _until(lambda: _group_empty(settings, group), 60, "the stopped sink left its group")
    partitions = await topic_partitions(settings, [contract.delivery_topic])
    consumer = clients.consumer(settings, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit(dict.fromkeys(partitions, 0))
    finally:
        await consumer.stop()
    assert await _committed(settings, group, contract.delivery_topic) == 0


async def test_a_sink_killed_mid_stream_and_restarted_writes_every_delivery_once(
        settings: Settings, services: Services, tmp_path: Path) -> None:
    contract = await _applied(settings, services)
    folder = contract_folder(tmp_path, contract.id)
    chunks, per_chunk = 12, 50
    written: dict[str, tuple[int, int]] = {}

    async def write(chunk: int) -> None:
        written.update(await _write_deliveries(
            settings, services, contract, per_chunk, create=False, first=chunk * per_chunk,
            attributes=lambda index: {"time": NOV_1 if index % 3 else NOV_2,
                                      "expiresat": FAR}))

    async def stream() -> None:
        for chunk in range(1, chunks):
            await write(chunk)
            await asyncio.sleep(0.3)

    def on_disk() -> int:
        return sum(_ids(folder).values()) if folder.exists() else 0

    async def running() -> bool:
        return on_disk() >= per_chunk

    async def some_written() -> bool:
        return on_disk() >= 3 * per_chunk

    first = await _start(services, contract, tmp_path)
    await write(0)
    await _until(running, 60, "the sink did not start writing")
    streaming = asyncio.ensure_future(stream())
    await _until(some_written, 60, "the sink did not write the first chunks streamed")
    first.send_signal(signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL
    before_kill = on_disk()
    await asyncio.wait_for(streaming, 60)
    assert before_kill < len(written), "killed too late to matter"

    async def all_committed() -> bool:
        return await _committed(settings, files_group(contract.id),
                                contract.delivery_topic) == len(written)

    for restart in ("after the kill", "with every commit lost"):
        if restart == "with every commit lost":
            await _rewind(settings, contract)
        second = await _start(services, contract, tmp_path)
        await _until(all_committed, 90, f"deliveries were lost {restart}")
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0
        ids = _ids(folder)
        assert set(ids) == set(written), f"deliveries were lost {restart}"
        assert max(ids.values()) == 1, f"a delivery was written twice {restart}"
    assert sorted(_lines(folder)) == ["2026-11-01.jsonl", "2026-11-02.jsonl"]


async def test_files_whose_deliveries_expired_are_deleted_and_each_deletion_audited(
        settings: Settings, services: Services, tmp_path: Path) -> None:
    contract = await _applied(settings, services, retention="PT1M")
    folder = contract_folder(tmp_path, contract.id)
    folder.mkdir(mode=0o700)
    october = date(2026, 10, 1)
    left_over = [{"id": f"old-{n}", "time": "2026-10-01T00:00:00.000Z",
                  "expiresat": "2026-10-02T00:00:00Z"} for n in range(3)]
    day_file(folder, october).write_text("".join(json.dumps(e) + "\n" for e in left_over))
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    soon = rfc3339_millis(datetime.now(UTC) + timedelta(seconds=6))
    written = await _write_deliveries(settings, services, contract, 20, create=False,
                                      attributes=lambda index: {"time": today,
                                                                "expiresat": soon})
    sink = FileSink(settings, contract, tmp_path)
    stop = asyncio.Event()
    running = asyncio.ensure_future(sink.run(stop, expiry_check_s=0.5))
    try:
        async def started() -> bool:
            return not day_file(folder, october).exists() and \
                sorted(_ids(folder)) == sorted(written)

        await _until(started, 60, "the left-over file was not deleted, or today's not written")

        async def deleted() -> bool:
            if running.done():
                await running
            return not day_file(folder, today.date()).exists()

        await _until(deleted, 60, "today's file was not deleted once its deliveries expired")
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]

    chain = file_sink_chain(contract.id)
    records = [record for _, record in (await read_chains(settings))[chain]]
    assert [(r["decision"], r["file_day"], r["deliveries_deleted"])  # type: ignore[index]
            for r in records] == [("deleted", october, 3), ("deleted", today.date(), 20)]
    first, second = records
    assert first["previous_hash"] == GENESIS  # type: ignore[index]
    assert second["previous_hash"] == first["record_hash"]  # type: ignore[index]
    assert {(r["contract_id"], r["subscriber"], r["subject_ref"], r["delivery_id"])  # type: ignore[index]
            for r in records} == {(contract.id, contract.subscriber, "", None)}
    verified = subprocess.run([*CLI, "audit", "verify"], env=_environment(services),
                              capture_output=True, text=True, timeout=300, check=False)
    assert verified.returncode == 0, verified.stderr
    assert "intact" in verified.stdout

    # Stopped between recording a deletion and deleting: the file is deleted, not recorded again.
    again = [{"id": f"again-{n}", "time": rfc3339_millis(today), "expiresat": soon}
             for n in range(20)]
    day_file(folder, today.date()).write_text("".join(json.dumps(e) + "\n" for e in again))
    restarted = FileSink(settings, contract, tmp_path)
    stop = asyncio.Event()
    stop.set()  # start, delete what expired, stop
    await asyncio.wait_for(restarted.run(stop), 60)
    assert not day_file(folder, today.date()).exists()
    assert len((await read_chains(settings))[chain]) == 2, "a deletion was recorded twice"
