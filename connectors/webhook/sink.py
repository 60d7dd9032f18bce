"""The webhook sink's Kafka side: read a contract's delivery topic, hand each delivery to the
caller, commit only what the endpoint accepted or what became a dead letter.

It reads in the consumer group ``sink.<contract>`` (:func:`connectors.sinks.sink_group`;
operators see the group's lag like a subscriber's). Each partition has a task
of its own that sends its deliveries one after another, so one person's deliveries (one key,
one partition) arrive in order, while a slow or failing partition holds no other back; a
partition is paused while its task has work, so that the consumer keeps polling (and stays in
its group) however long an endpoint makes it wait. The task commits its partition's offset
just past the last delivery accepted (or dead-lettered), never further: when its queue is
empty, every :data:`COMMIT_INTERVAL_S` while it is not, and when it is stopped or its
partition revoked. A kill re-sends what was accepted since the last commit and the delivery
in flight, with their same ``webhook-id``; nothing is skipped.

A ``410 Gone`` stops the sink without committing the refused delivery
(:class:`~connectors.webhook.calls.EndpointGone`): nobody commits the group any more, and the
lag monitor reports it STOP until the endpoint is fixed and the sink started again.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from cloudevents.core.exceptions import BaseCloudEventException

from connectors.deliveries import compact_json, delivery_json
from connectors.sinks import send_dead_letter, sink_consumer, sink_group
from connectors.webhook import metrics
from connectors.webhook.calls import Caller, Policy
from connectors.webhook.endpoint import (
    URL_FIELD,
    Resolver,
    check_target,
    checked_transport,
    resolve,
)
from connectors.webhook.signing import Signer
from schemas.catalog import Catalog
from schemas.serde import AvroSerde
from streams.kafka import clients
from streams.routing.dead_letters import DeadLetters
from streams.settings import Settings
from streams.state.contract import Contract, Webhook

log = structlog.get_logger(__name__)
FETCH_RECORDS = 100
COMMIT_INTERVAL_S = 0.1
"""A partition's offset is committed at most this often while it has deliveries queued, and
whenever its queue is empty: a commit per delivery cost about 40% of the sink's rate, and a
kill re-sends, with their same ids, only the deliveries accepted since the last commit."""
"""Records fetched at a time: a partition's task is handed at most this many at once."""


class Undelivered(Exception):
    """The endpoint accepted none of a delivery's calls: its dead letter's error."""

    def __init__(self, attempts: int, last: object) -> None:
        self.field = URL_FIELD
        self.reason = f"the endpoint accepted none of {attempts} calls (last answer: {last})"
        super().__init__(f"{self.field}: {self.reason}")


@dataclass
class Outlets:
    """Where a partition's task sends what it read: the endpoint, or the dead-letter topic."""

    contract_id: str
    caller: Caller
    serde: AvroSerde
    dead_letters: DeadLetters
    producer: AIOKafkaProducer


class _Partition:
    """One partition's deliveries, sent one after another by a task of its own."""

    def __init__(self, partition: TopicPartition, consumer: AIOKafkaConsumer,
                 outlets: Outlets) -> None:
        self.partition = partition
        self._consumer = consumer
        self._outlets = outlets
        self._task: asyncio.Task[None] | None = None
        self._queue: deque[Any] = deque()
        self._done: int | None = None
        """The offset just past the last delivery accepted or dead-lettered."""
        self._committed: int | None = None

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def take(self, records: list[Any]) -> None:
        """Queue ``records`` behind those not yet sent, and send them in order."""
        self._queue.extend(records)
        if not self.busy:
            self._task = asyncio.ensure_future(self._send_queued())

    def failure(self) -> BaseException | None:
        """What stopped the task, once it is done."""
        if self._task is None or not self._task.done() or self._task.cancelled():
            return None
        return self._task.exception()

    async def cancel(self) -> None:
        """Stop sending, and commit what was done (the partition is still assigned)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self._commit()
        except KafkaError as exc:  # best effort: what stopped the sink must be the error shown
            log.warning("webhook sink could not commit on stop: the next run re-sends",
                        partition=self.partition.partition, error=type(exc).__name__)

    async def _send_queued(self) -> None:
        last_commit = time.monotonic()
        while self._queue:
            record = self._queue[0]
            await self._send(record)
            self._queue.popleft()
            self._done = record.offset + 1
            if not self._queue or time.monotonic() - last_commit >= COMMIT_INTERVAL_S:
                await self._commit()
                last_commit = time.monotonic()

    async def _commit(self) -> None:
        """Commit the partition just past the last delivery done, if not yet committed."""
        if self._done is not None and self._done != self._committed:
            await self._consumer.commit({self.partition: self._done})
            self._committed = self._done

    async def _send(self, record: Any) -> None:
        """Deliver one record, or write its dead letter once the budget is spent."""
        outlets = self._outlets
        try:
            event = delivery_json(outlets.serde, list(record.headers), record.key, record.value)
        except (ValueError, KeyError, BaseCloudEventException) as exc:
            # unreadable: sent again and again, it would stop its partition for good
            await self._dead_letter(record, exc)
            return
        body = compact_json(event)
        outcome = await outlets.caller.deliver(str(event["id"]), body)
        if not outcome.accepted:
            await self._dead_letter(record, Undelivered(outcome.attempts, outcome.last))

    async def _dead_letter(self, record: Any, error: Exception) -> None:
        """Write the record's dead letter (its coordinates and ``error``, nothing it holds)."""
        outlets = self._outlets
        await send_dead_letter(outlets.producer, outlets.dead_letters, record, error)
        metrics.DEAD_LETTERS.labels(outlets.contract_id).inc()


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    """Cancels a revoked partition's task before the partition goes."""

    def __init__(self, partitions: dict[TopicPartition, _Partition]) -> None:
        self._partitions = partitions

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        for partition in revoked:
            found = self._partitions.pop(partition, None)
            if found is not None:
                await found.cancel()

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """Nothing to do: a partition gets its task when records arrive."""


async def pump(consumer: AIOKafkaConsumer, topic: str, outlets: Outlets,
               stop: asyncio.Event) -> None:
    """Subscribe and deliver until ``stop`` is set or a partition's task fails (its error is
    raised, e.g. :class:`~connectors.webhook.calls.EndpointGone`)."""
    partitions: dict[TopicPartition, _Partition] = {}
    consumer.subscribe([topic], listener=_Revocations(partitions))
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=FETCH_RECORDS)
            for partition, records in batches.items():
                worker = partitions.setdefault(
                    partition, _Partition(partition, consumer, outlets))
                worker.take(records)
                consumer.pause(partition)
            _resume_idle(consumer, partitions)
    finally:
        for worker in list(partitions.values()):
            await worker.cancel()


def _resume_idle(consumer: AIOKafkaConsumer,
                 partitions: dict[TopicPartition, _Partition]) -> None:
    """Resume the partitions whose task finished; raise the first task's failure."""
    for partition, worker in partitions.items():
        if worker.busy:
            continue
        failure = worker.failure()
        if failure is not None:
            raise failure
        if partition in consumer.paused():
            consumer.resume(partition)


def webhook_of(contract: Contract) -> Webhook:
    """The webhook the contract names; LookupError when it names none."""
    if contract.delivery is None or contract.delivery.webhook is None:
        raise LookupError(f"contract {contract.id} names no webhook (delivery.webhook)")
    return contract.delivery.webhook


async def run(settings: Settings, contract: Contract, signer: Signer, stop: asyncio.Event,
              resolver: Resolver = resolve) -> None:
    """Deliver the contract's topic to its webhook until ``stop`` is set; raises
    :class:`~connectors.webhook.endpoint.EndpointRefused` at once for an endpoint that may not
    be called, :class:`~connectors.webhook.calls.EndpointGone` once it answered 410."""
    url = webhook_of(contract).url
    contract_id = contract.id
    policy = Policy.of(settings)
    await check_target(url, policy.allow_private, resolver)
    registry = clients.schema_registry(settings)
    serde = AvroSerde(registry)
    consumer = sink_consumer(settings, sink_group(contract_id))
    producer = clients.producer(settings)
    # no proxy from the environment: the address checked must be the address called
    transport = checked_transport(policy.allow_private, resolver)
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                 transport=transport) as client:
        caller = Caller(contract_id, url, signer, policy, client, resolver)
        outlets = Outlets(contract_id, caller, serde, DeadLetters(Catalog.load(), serde),
                          producer)
        await producer.start()
        await consumer.start()
        try:
            await pump(consumer, contract.delivery_topic, outlets, stop)
        finally:
            await consumer.stop()
            await producer.stop()
            registry.close()
