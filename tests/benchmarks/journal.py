"""The citizen journal's view: rebuild time of a fresh view, and one person's lookup time.

Against the bus the settings name (``CIRCULATION_KAFKA_BOOTSTRAP``,
``CIRCULATION_SCHEMA_REGISTRY_URL``): run it on a private stack, since it adds ``--count``
audit records (default 1,000,000) to that stack's ``bus.audit``, ``--per-person`` decisions
(default 10) for each of ``count / per-person`` persons, each on its person's partition and
linked into its partition's chain as a worker writes them (two decisions in three delivered,
the third withheld). Then:

- **rebuild**: a fresh view (an empty folder) follows the topics until it holds everything on
  them, as a gateway started on a new volume does: seconds, and records read per second (every
  record of the four topics, the stack's earlier ones included);
- **lookup**: ``--lookups`` persons (default 1,000) drawn at random, each one's journal read
  from the rebuilt view, and its upcoming view: median and p99, in milliseconds.

Run: ``.venv/bin/python tests/benchmarks/journal.py [--count 1000000] [--per-person 10]
[--lookups 1000] [--skip-write]``, from the repository root (``--skip-write`` measures the
view on what the stack already holds). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from schemas.catalog import Catalog
from schemas.registration import value_subject
from schemas.serde import AvroSerde
from streams.audit.chain import AuditChains
from streams.audit.encoder import AuditEncoder
from streams.journal.follower import JournalFollower
from streams.journal.queries import journal, upcoming
from streams.journal.view import JournalView
from streams.kafka import clients
from streams.kafka.admin import topic_partitions
from streams.kafka.partitioning import subject_partition
from streams.kafka.topics import AUDIT
from streams.settings import Settings

RECORD = Catalog.load().bus_record("audit").latest
BATCH = 5000


def person(index: int) -> str:
    return f"sr1_{index:064x}"


async def write(settings: Settings, count: int, per_person: int) -> float:
    """``count`` audit records on the stack's trail; the seconds it took."""
    partitions = len(await topic_partitions(settings, [AUDIT]))
    serde = AvroSerde(clients.schema_registry(settings))
    encoder = AuditEncoder(RECORD.raw)
    chains = AuditChains()
    decided = datetime.now(UTC) - timedelta(days=30)
    persons = count // per_person
    producer = clients.producer(settings, linger_ms=20, max_batch_size=1 << 20)
    started = time.perf_counter()
    await producer.start()
    try:
        for first in range(0, count, BATCH):
            sends = []
            for index in range(first, min(first + BATCH, count)):
                subject = person(index % persons)
                partition = subject_partition(subject, partitions)
                delivered = index % 3 != 0
                record = chains.record(
                    partition, event_id=str(uuid.uuid4()), contract_id="bench-journal",
                    subscriber="ville-de-lyon", provider="cnous",
                    dataset="statut_etudiant_boursier", subject_ref=subject,
                    reason=None if delivered else "no_consent",
                    fields_delivered=("echelon",) if delivered else (),
                    decided_at=decided + timedelta(milliseconds=index),
                    delivery_id=str(uuid.uuid4()) if delivered else None)
                value = serde.framed(value_subject(AUDIT), RECORD, encoder.encode(record))
                sends.append(await producer.send(AUDIT, value, key=subject.encode(),
                                                 partition=partition))
            await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def rebuild(settings: Settings, folder: Path) -> tuple[float, int]:
    """A fresh view caught up with the topics: seconds, and records read."""
    view = JournalView(folder)
    with clients.schema_registry(settings) as registry:
        follower = JournalFollower(settings, AvroSerde(registry), Catalog.load(), view)
        started = time.perf_counter()
        await follower.start()
        try:
            await follower.caught_up()
            elapsed = time.perf_counter() - started
        finally:
            await follower.stop()
    view.close()
    return elapsed, follower.records


def lookups(folder: Path, persons: int, count: int, per_person: int,
            ) -> tuple[list[float], list[float]]:
    """Milliseconds of each journal lookup, and of each upcoming view."""
    view = JournalView(folder)
    chosen = random.Random(23).sample(range(persons), min(count, persons))
    day = date.today()
    read, ahead = [], []
    try:
        for index in chosen:
            started = time.perf_counter()
            found = journal(view, person(index))
            read.append((time.perf_counter() - started) * 1000)
            assert len(found.deliveries) + len(found.withheld) >= per_person, index
            started = time.perf_counter()
            upcoming(view, person(index), day)
            ahead.append((time.perf_counter() - started) * 1000)
    finally:
        view.close()
    return read, ahead


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def main(count: int, per_person: int, looked_up: int, skip_write: bool) -> None:
    settings = Settings()
    written = 0.0 if skip_write else asyncio.run(write(settings, count, per_person))
    with tempfile.TemporaryDirectory() as folder:
        seconds, records = asyncio.run(rebuild(settings, Path(folder) / "journal"))
        read, ahead = lookups(Path(folder) / "journal", count // per_person, looked_up,
                              per_person)
    print(f"| journal view, {count:,} audit records for {count // per_person:,} persons "
          "added to the trail | figure |")
    print("|---|---|")
    if not skip_write:
        print(f"| written, records/s | {count / written:,.0f} |")
    print(f"| rebuild of a fresh view | {seconds:,.1f} s, {records:,} records, "
          f"{records / seconds:,.0f} records/s |")
    print(f"| journal of one person ({len(read)} persons) | median {statistics.median(read):.2f}"
          f" ms, p99 {p99(read):.2f} ms |")
    print(f"| upcoming view of one person | median {statistics.median(ahead):.2f} ms, "
          f"p99 {p99(ahead):.2f} ms |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--per-person", type=int, default=10)
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--skip-write", action="store_true")
    arguments = parser.parse_args()
    main(arguments.count, arguments.per_person, arguments.lookups, arguments.skip_write)
