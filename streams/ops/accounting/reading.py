"""The books of a window, read from the cluster: provider topics, audit trail, deliveries, dead
letters, and the state the rule of concern is replayed on.

Only pseudonymous data is read, and no secret: the provider topics' headers and keys (never
their values), the audit and dead-letter records, the deliveries' headers (never their values),
the contracts and the population records of the subjects the window's events are about.

The routers' committed offsets are read before any end offset: an event behind them was
acknowledged, so every record it gave was written before those end offsets were asked, and it
can be judged however young it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import GroupCoordinatorNotAvailableError

from schemas.catalog import Catalog
from schemas.codec import DecodeError, to_json
from schemas.serde import AvroSerde
from streams.audit.chain import DELETED
from streams.audit.state_changes import RECORDED
from streams.kafka import clients
from streams.kafka.admin import existing_topics, topic_partitions
from streams.kafka.topics import AUDIT, CONTRACTS, DLQ, POPULATION, PROVIDER_PREFIX
from streams.ops.accounting.books import Books, Delivery, Event, Outcome, Place, Window
from streams.ops.accounting.concern import Fence, Recorded, StateConcerns
from streams.ops.lag.model import DELIVERY_PREFIX, ROUTER_GROUP
from streams.routing.replay_markers import is_marker_read
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.fences import FENCE_KEY, is_fence, read_fence

IN_FLIGHT = timedelta(seconds=60)
"""How young a record may be and still be in flight (not yet routed, or its companion records
not yet written): younger ones are counted, not judged, unless the routers acknowledged them."""
CLOCK_MARGIN = timedelta(seconds=60)
"""Decisions, deliveries and dead letters are read from this long before the window: clocks of
different hosts stamp the records of one event."""
MIN_LOOKBACK = timedelta(hours=1)
"""Events are read from at least this long before the window too (and at least as long as the
window): the event of a decision in the window may have been published before it."""
ERASURE_NOTICE = "erasure_notice"
COORDINATOR_ATTEMPTS = 30

Advance = Callable[[str, int], None]
"""Told, per kind of record, how many more were read: the command's progress."""


@dataclass(frozen=True)
class Ledger:
    """Everything reconciling a window needs."""

    books: Books
    window: Window
    concerns: StateConcerns
    read_at: datetime


async def read_ledger(settings: Settings, since: timedelta, advance: Advance,
                      now: datetime | None = None) -> Ledger:
    """The books of the window of length ``since`` ending now, and the concerns to judge them."""
    now = now or datetime.now(UTC)
    window = Window(now - since, now - IN_FLIGHT)
    horizon = window.start - max(since, MIN_LOOKBACK)
    catalog = Catalog.load()
    committed = await routers_committed(settings)
    layout = await _layout(settings)
    consumer = clients.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        with clients.schema_registry(settings) as registry:
            serde = AvroSerde(registry)
            reader = _Reader(consumer, advance, layout)
            events, fences = await _provider_records(reader, horizon, committed)
            recent = window.start - CLOCK_MARGIN
            outcomes = await _outcomes(reader, serde, catalog, recent)
            deliveries = await _deliveries(reader, recent)
            dead = await _dead_letters(reader, serde, catalog, recent)
            contracts = await _contracts(reader, serde, catalog)
            subjects = {e.subject for e in events if e.subject is not None}
            enrolments = await _enrolments(reader, serde, catalog, subjects)
    finally:
        await consumer.stop()
    return Ledger(Books(events, outcomes, deliveries, dead), window,
                  StateConcerns(contracts, enrolments, fences, horizon), now)


async def routers_committed(settings: Settings) -> dict[TopicPartition, int]:
    """The routers' committed offsets on the provider topics. A cluster that never had a
    consumer group has no coordinator yet: asking creates its offsets topic, and the question
    is asked again while it comes up."""
    async with clients.admin(settings) as admin:
        for attempt in range(COORDINATOR_ATTEMPTS):
            try:
                answer = await admin.list_consumer_group_offsets(ROUTER_GROUP)
                break
            except GroupCoordinatorNotAvailableError:
                if attempt == COORDINATOR_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(1)
    return {tp: int(meta.offset) for tp, meta in answer.items()
            if meta.offset >= 0 and tp.topic.startswith(PROVIDER_PREFIX)}


async def _layout(settings: Settings) -> dict[str, list[TopicPartition]]:
    """The partitions of every topic read, asked once: provider topics, delivery topics, the
    audit trail, dead letters, contracts and population."""
    names = [name for name in await existing_topics(settings, "")
             if (name.startswith(PROVIDER_PREFIX) and name.count(".") == 2)
             or name.startswith(DELIVERY_PREFIX) or name in (AUDIT, DLQ, CONTRACTS, POPULATION)]
    layout: dict[str, list[TopicPartition]] = {}
    for tp in await topic_partitions(settings, names, missing_ok=True) if names else []:
        layout.setdefault(tp.topic, []).append(tp)
    return layout


class _Reader:
    """Reads partitions from a point to the end offsets seen when asked, one kind at a time."""

    def __init__(self, consumer: AIOKafkaConsumer, advance: Advance,
                 layout: dict[str, list[TopicPartition]]) -> None:
        self._consumer = consumer
        self._advance = advance
        self.layout = layout

    def topics(self, prefix: str) -> list[str]:
        return sorted(topic for topic in self.layout if topic.startswith(prefix))

    async def read(self, kind: str, topics: list[str], since: datetime | None,
                   take: Callable[[ConsumerRecord[Any, Any]], None]) -> None:
        """Give ``take`` every record of ``topics`` from ``since`` (all, when None)."""
        partitions = [tp for topic in topics for tp in self.layout.get(topic, ())]
        if not partitions:
            return
        consumer = self._consumer
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await self._starts(partitions, since, ends)
        pending = {tp for tp in partitions if starts[tp] < ends[tp]}
        for tp in pending:
            consumer.seek(tp, starts[tp])
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=20_000)
            for tp, records in batches.items():
                kept = [r for r in records if r.offset < ends[tp]]
                for record in kept:
                    take(record)
                self._advance(kind, len(kept))
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)

    async def _starts(self, partitions: list[TopicPartition], since: datetime | None,
                      ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        beginnings = await self._consumer.beginning_offsets(partitions)
        if since is None:
            return dict(beginnings)
        found = await self._consumer.offsets_for_times(
            {tp: int(since.timestamp() * 1000) for tp in partitions})
        return {tp: ends[tp] if found.get(tp) is None else max(found[tp].offset, beginnings[tp])
                for tp in partitions}


def _at(record: ConsumerRecord[Any, Any]) -> Place:
    return Place(record.topic, record.partition, record.offset)


def _written(record: ConsumerRecord[Any, Any]) -> datetime:
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


def _header(record: ConsumerRecord[Any, Any], name: str) -> str | None:
    """The one value of header ``name``, as text; None when absent, null, repeated or not
    UTF-8 (routing dead-letters such a record)."""
    values = [value for key, value in record.headers if key == name]
    if len(values) != 1 or values[0] is None:
        return None
    try:
        return bytes(values[0]).decode("utf-8")
    except UnicodeDecodeError:
        return None


async def _provider_records(reader: _Reader, since: datetime,
                            committed: dict[TopicPartition, int],
                            ) -> tuple[list[Event], dict[tuple[str, int], list[Fence]]]:
    """The provider topics' events (headers and key only) and fences, from ``since``; the
    replay markers a worker reads as such are neither."""
    events: list[Event] = []
    fences: dict[tuple[str, int], list[Fence]] = {}

    def take(record: ConsumerRecord[Any, Any]) -> None:
        if is_fence(record.headers) and record.key == FENCE_KEY:
            positions = read_fence(record.value)
            if positions is not None:
                fences.setdefault((record.topic, record.partition), []).append(Fence(
                    record.offset, {(tp.topic, tp.partition): p for tp, p in positions.items()}))
                return
        if is_marker_read(record.key, record.value, record.offset, record.headers):
            return  # the records it names are accounted where they are
        _, provider, dataset = record.topic.split(".", 2)
        acknowledged = record.offset < committed.get(
            TopicPartition(record.topic, record.partition), 0)
        events.append(Event(_at(record), provider, dataset, _header(record, "ce_id"),
                            _header(record, "ce_subject"), _written(record), acknowledged))

    await reader.read("events", reader.topics(PROVIDER_PREFIX), since, take)
    return events, fences


async def _outcomes(reader: _Reader, serde: AvroSerde, catalog: Catalog,
                    since: datetime) -> list[Outcome]:
    """The audit trail's routing decisions from ``since``; what is not an audit record is left
    to ``audit verify``, which reports it. A file sink's deletion decides about a file, not
    about an event: it owes nothing to the books."""
    schema = catalog.bus_record("audit").latest.parsed
    outcomes: list[Outcome] = []

    def take(record: ConsumerRecord[Any, Any]) -> None:
        if record.value is None:
            return
        try:
            _, audit = serde.decode(record.value, schema)
        except DecodeError:
            return
        if audit["decision"] in (DELETED, RECORDED):  # a file or a state change: no event
            return
        outcomes.append(Outcome(
            _at(record), (audit["provider"], audit["dataset"], audit["event_id"]),
            audit["contract_id"], audit["reason"] if audit["decision"] == "withheld" else None,
            audit.get("delivery_id"), audit["decided_at"], _written(record),
            bool(audit.get("replay"))))

    await reader.read("decisions", [AUDIT], since, take)
    return outcomes


async def _deliveries(reader: _Reader, since: datetime) -> list[Delivery]:
    """Every delivery (headers only) from ``since``; erasure notices are not deliveries."""
    deliveries: list[Delivery] = []

    def take(record: ConsumerRecord[Any, Any]) -> None:
        if _header(record, "ce_type") == ERASURE_NOTICE:
            return
        contract = _header(record, "ce_contract") or record.topic.rsplit(".", 1)[-1]
        deliveries.append(Delivery(_at(record), contract, _header(record, "ce_id") or "",
                                   _written(record)))

    await reader.read("deliveries", reader.topics(DELIVERY_PREFIX), since, take)
    return deliveries


async def _dead_letters(reader: _Reader, serde: AvroSerde,
                        catalog: Catalog, since: datetime) -> frozenset[Place]:
    """Where the dead letters from ``since`` came from."""
    schema = catalog.bus_record("dead_letter").latest.parsed
    origins: set[Place] = set()

    def take(record: ConsumerRecord[Any, Any]) -> None:
        try:
            _, letter = serde.decode(record.value, schema)
        except (DecodeError, TypeError):
            return
        origins.add(Place(letter["origin_topic"], letter["origin_partition"],
                          letter["origin_offset"]))

    await reader.read("dead letters", [DLQ], since, take)
    return frozenset(origins)


async def _contracts(reader: _Reader, serde: AvroSerde, catalog: Catalog,
                     ) -> dict[str, tuple[Contract, Recorded]]:
    """The latest record of every contract, with where and when it was written."""
    schema = catalog.bus_record("contract").latest.parsed
    contracts: dict[str, tuple[Contract, Recorded]] = {}

    def take(record: ConsumerRecord[Any, Any]) -> None:
        if record.key is None:
            return
        key = bytes(record.key).decode("utf-8", "replace")
        if record.value is None:
            contracts.pop(key, None)
            return
        try:
            _, datum = serde.decode(record.value, schema)
            contract = Contract.from_record(to_json(schema, datum))
        except (DecodeError, ValueError):
            return  # the workers skip it too
        contracts[contract.id] = (contract, Recorded(_at(record), _written(record)))

    await reader.read("contracts", [CONTRACTS], None, take)
    return contracts


async def _enrolments(reader: _Reader, serde: AvroSerde, catalog: Catalog,
                      subjects: Iterable[str]) -> dict[tuple[str, str], tuple[bool, Recorded]]:
    """The latest enrolment or release of each of ``subjects`` by each contract."""
    wanted = set(subjects)
    schema = catalog.bus_record("population").latest.parsed
    enrolments: dict[tuple[str, str], tuple[bool, Recorded]] = {}

    def take(record: ConsumerRecord[Any, Any]) -> None:
        contract, _, subject = bytes(record.key or b"").decode("utf-8", "replace").partition("/")
        if subject not in wanted:
            return
        enrolled = False
        if record.value is not None:
            try:
                enrolled = bool(serde.decode(record.value, schema)[1]["enrolled"])
            except (DecodeError, KeyError, TypeError):
                return
        enrolments[contract, subject] = (enrolled, Recorded(_at(record), _written(record)))

    await reader.read("enrolments", [POPULATION], None, take)
    return enrolments
