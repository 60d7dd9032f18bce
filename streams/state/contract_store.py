"""Contracts on Kafka: the compacted ``bus.contracts`` topic, delivery topics and their schemas.

``bus.contracts`` is the register of contracts: key = contract id, value = the bus ``contract``
record in the Confluent wire format (subject ``bus.contracts-value``). Being compacted, it keeps
the last record of every contract forever, so reading it from the beginning to its end offsets
gives the current set (last record per key wins; a tombstone removes the key).

Applying a contract prepares its delivery side *before* recording it, because routers start
delivering as soon as they see the record:

1. the delivery topic ``deliver.<subscriber>.<contract>`` is created or aligned:
   ``cleanup.policy=delete``, ``retention.ms`` = the contract's retention, ``segment.ms`` =
   min(retention/10, 1 day) but at least 1 minute, so expired data is really deleted;
2. the delivery schema is registered under ``deliver.<subscriber>.<contract>-value`` (Confluent
   TopicNameStrategy). It is the dataset schema projected on the contract's fields and, for a
   contract naming several datasets, the **union** of one projected record per dataset: a
   standard Confluent Avro deserializer reads either without any configuration, and tells the
   datasets apart by record name (``fr.gouv.circulation.deliver.<contract>.<dataset>.<Record>``,
   see :mod:`schemas.projection`). No compatibility level is forced on these subjects: their
   schema changes only when the contract itself is changed, which is a new agreement with the
   subscriber, and every record names its writer schema by id;
3. the contract record is written, unless the topic already holds an identical one, and
   fenced on every provider partition (:mod:`streams.state.fences`), so that no event published
   after ``apply`` or ``revoke`` returned is routed under the contracts as they were.

Re-applying the same file therefore changes nothing: same topic configuration, the registry
recognises the schema it already holds (no new version), no new record. A revoked contract is
never revived by re-applying its file (revocation is a decision of its own, e.g. by the data
protection officer): a new contract id is needed. Nor may a contract change subscriber, since
its delivery topic is named after it, nor a subscriber id change organisation
(:mod:`streams.state.subscribers`).

``apply`` never leaves a contract half-applied. Everything that can be refused is checked for
every contract before anything is written: the recorded transition, the subscriber's binding,
the delivery topic's name, and whether the registry's compatibility rule accepts the delivery
schema. The writes then go from invisible to visible: new delivery topics and schemas (nothing
routes to them before the record), then the records, then the configuration of topics whose
contract was already recorded (a shorter retention deletes data: not before the record says
so), then the fences. A failure part-way leaves what routers see as it was, or recorded with its
delivery side ready; running the same ``apply`` again completes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from schemas.catalog import Catalog
from schemas.codec import to_json
from schemas.projection import DeliverySchema, ProjectionError
from schemas.registration import value_subject
from schemas.registry import SchemaRegistry
from schemas.serde import AvroSerde
from streams.kafka import clients
from streams.kafka.admin import ensure_topics, topic_partitions
from streams.kafka.topics import CONTRACTS, TopicSpec, bus_topics, spec
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.fences import Positions, positions_after, raise_fences
from streams.state.record_errors import record_error
from streams.state.subscribers import SubscriberBindings

log = structlog.get_logger(__name__)

_READ_TIMEOUT = 30.0
_KAFKA_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")
"""The names Kafka accepts for a topic."""


class ContractStoreError(RuntimeError):
    """The contract cannot be applied or revoked as asked; the message says why."""


class ContractNotFound(LookupError):
    """No contract of that id was ever recorded."""


@dataclass(frozen=True)
class Applied:
    """What applying one contract did."""

    contract: Contract
    previous: Contract | None
    """The contract recorded before, if any."""
    topic_created: bool
    schema_id: int
    """Registry id of the delivery schema."""

    @property
    def outcome(self) -> Literal["created", "updated", "unchanged"]:
        """created: new contract; updated: its record changed; unchanged: nothing written."""
        if self.previous is None:
            return "created"
        return "unchanged" if self.previous == self.contract else "updated"


def delivery_topic_spec(settings: Settings, contract: Contract) -> TopicSpec:
    """The delivery topic as the contract wants it (partitions and replication from settings)."""
    return spec(settings, contract.delivery_topic,
                **{k.replace(".", "_"): v for k, v in contract.topic_config().items()})


def contracts_topic_spec(settings: Settings, topic: str = CONTRACTS) -> TopicSpec:
    """The compacted contracts topic, configured as :func:`streams.kafka.topics.bus_topics` says."""
    (contracts,) = [s for s in bus_topics(settings) if s.name == CONTRACTS]
    return dataclasses.replace(contracts, name=topic)


class ContractStore:
    """Apply, revoke and read contracts on the cluster and the schema registry.

    ``topic`` defaults to ``bus.contracts``; tests may point it elsewhere.
    """

    def __init__(self, settings: Settings, registry: SchemaRegistry, catalog: Catalog,
                 topic: str = CONTRACTS) -> None:
        self.settings = settings
        self.registry = registry
        self.catalog = catalog
        self.topic = topic
        self._serde = AvroSerde(registry)
        self._record = catalog.bus_record("contract").latest
        self._read_up_to: Positions = {}
        """The end offsets the last :meth:`load` read to: what a command found recorded."""

    async def load(self) -> dict[str, Contract]:
        """Every recorded contract by id: the topic read from its beginning to its end offsets.

        A record that cannot be read is logged and skipped rather than hiding every other
        contract from operators.
        """
        partitions = await self._partitions()
        if not partitions:
            return {}
        consumer = clients.consumer(self.settings, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            return await self._read_to_end(consumer, partitions)
        finally:
            await consumer.stop()

    async def _partitions(self) -> list[TopicPartition]:
        """The contracts topic's partitions; none when the topic does not exist yet."""
        return await topic_partitions(self.settings, [self.topic], missing_ok=True)

    async def _read_to_end(self, consumer: AIOKafkaConsumer,
                           partitions: list[TopicPartition]) -> dict[str, Contract]:
        """Fold every record up to the end offsets seen now into the latest contract per key."""
        ends = await consumer.end_offsets(partitions)
        self._read_up_to = dict(ends)
        starts = await consumer.beginning_offsets(partitions)
        pending = {tp for tp in partitions if ends[tp] > starts[tp]}
        contracts: dict[str, Contract] = {}
        deadline = asyncio.get_running_loop().time() + _READ_TIMEOUT
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=500)
            for records in batches.values():
                for record in records:
                    self._fold(contracts, record.key, record.value, record.offset)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if pending and asyncio.get_running_loop().time() > deadline:
                raise ContractStoreError(f"could not read {self.topic} to its end within "
                                         f"{_READ_TIMEOUT:.0f}s")
        return contracts

    def _fold(self, contracts: dict[str, Contract], key: bytes | None, value: bytes | None,
              offset: int) -> None:
        """Apply one record: a tombstone forgets the key, a contract record replaces it."""
        if key is None:
            log.warning("contract record without key skipped", topic=self.topic, offset=offset)
            return
        if value is None:
            contracts.pop(key.decode("utf-8", "replace"), None)
            return
        record = None
        try:
            _, datum = self._serde.decode(value, self._record.parsed)
            record = to_json(self._record.parsed, datum)
            contract = Contract.from_record(record)
        except ValueError as exc:
            log.warning("unreadable contract record skipped", topic=self.topic, offset=offset,
                        error=record_error(exc, record))
            return
        contracts[contract.id] = contract

    async def get(self, contract_id: str) -> Contract:
        """The recorded contract of that id; :class:`ContractNotFound` otherwise."""
        contract = (await self.load()).get(contract_id)
        if contract is None:
            raise ContractNotFound(f"no contract of that id on {self.topic}")
        return contract

    async def apply(self, contracts: Sequence[Contract]) -> list[Applied]:
        """Prepare each contract's delivery topic and schema, then record it; idempotent.

        Every contract is checked against what is recorded and what the registry accepts
        before anything is changed, so a refused one leaves the bus as it was, and the writes
        are ordered so that a failure part-way is completed by running the same call again.
        """
        await ensure_topics(self.settings, [contracts_topic_spec(self.settings, self.topic)])
        recorded = await self.load()
        schemas = self._checked(recorded, contracts)
        done = []
        async with self._producer() as producer:
            for contract, schema in zip(contracts, schemas, strict=True):
                specs = [delivery_topic_spec(self.settings, contract)]
                created = await ensure_topics(self.settings, specs,
                                              align=contract.id not in recorded)
                schema_id = self.registry.register(contract.delivery_subject, schema)
                # registered here, by the operator, for whoever sends erasure notices later
                self.registry.register(contract.erasure_subject,
                                       self.catalog.bus_record("erasure_notice").latest.text)
                done.append(Applied(contract, recorded.get(contract.id), bool(created),
                                    schema_id))
            written = [await self._write(producer, a.contract) for a in done
                       if a.outcome != "unchanged"]
            await ensure_topics(self.settings, [delivery_topic_spec(self.settings, c)
                                                for c in contracts if c.id in recorded])
            await self._fence(producer, written)
        for applied in done:
            log.info("contract applied", contract=applied.contract.id, outcome=applied.outcome,
                     topic=applied.contract.delivery_topic, schema_id=applied.schema_id)
        return done

    def _checked(self, recorded: dict[str, Contract], contracts: Sequence[Contract],
                 ) -> list[DeliverySchema]:
        """Each contract's delivery schema, once every check that could refuse one of them
        passed; :class:`ContractStoreError` naming the contract otherwise. Writes nothing."""
        bindings = SubscriberBindings()
        for contract in recorded.values():
            bindings.record(contract, f"contract {contract.id} on {self.topic}")
        schemas = []
        for contract in contracts:
            _check_transition(recorded.get(contract.id), contract)
            conflict = bindings.bind(contract, f"contract {contract.id} in this call")
            if conflict is not None:
                raise ContractStoreError(f"contract {contract.id}: {conflict}")
            if not _KAFKA_TOPIC.fullmatch(contract.delivery_topic):
                raise ContractStoreError(f"contract {contract.id}: its delivery topic name is "
                                         f"not one Kafka accepts")
            schemas.append(self._delivery_schema(contract))
        return schemas

    def _delivery_schema(self, contract: Contract) -> DeliverySchema:
        """The contract's delivery schema, if the registry would accept it under its subject."""
        try:
            schema = contract.delivery_schema(self.catalog)
        except ProjectionError as exc:
            raise ContractStoreError(f"contract {contract.id}: no delivery schema: "
                                     f"{exc}") from None
        if not self.registry.is_compatible(contract.delivery_subject, schema):
            level = self.registry.compatibility(contract.delivery_subject)
            raise ContractStoreError(
                f"contract {contract.id}: the registry would refuse its delivery schema under "
                f"{contract.delivery_subject} (compatibility {level} with the versions it "
                f"holds); nothing was applied")
        return schema

    async def revoke(self, contract_id: str, at: datetime | None = None) -> Contract:
        """Record the contract as revoked (at ``at``, default now); already revoked: unchanged.

        The delivery topic is left to its retention: what was lawfully delivered is kept for
        the agreed period, and nothing more is delivered once routers see the record.
        """
        current = await self.get(contract_id)
        async with self._producer() as producer:
            if current.revoked:
                await self._fence(producer, [])
                return current
            revoked = current.revoke(at or datetime.now(UTC))
            # the workers send the end's notice: a contract applied under an older notice
            # schema gets the current one here, by the operator, who alone may register
            self.registry.register(revoked.erasure_subject,
                                   self.catalog.bus_record("erasure_notice").latest.text)
            await self._fence(producer, [await self._write(producer, revoked)])
        log.info("contract revoked", contract=contract_id, revoked_at=str(revoked.revoked_at))
        return revoked

    async def _fence(self, producer: AIOKafkaProducer, written: list[RecordMetadata]) -> None:
        """Fence what was written and what was found recorded: a command that changed nothing
        may retry one whose fences failed after its records were written."""
        await raise_fences(self.settings, producer,
                           {**self._read_up_to, **positions_after(written)})

    def _producer(self) -> _Producer:
        return _Producer(self.settings)

    async def _write(self, producer: AIOKafkaProducer, contract: Contract) -> RecordMetadata:
        """Write the contract record (key = contract id) and wait for the broker's ack; the
        caller fences what it wrote (:mod:`streams.state.fences`)."""
        value = self._serde.encode_json(value_subject(self.topic), self._record,
                                        contract.to_record())
        return await producer.send_and_wait(self.topic, value, key=contract.id.encode())


def _check_transition(previous: Contract | None, contract: Contract) -> None:
    """Refuse reviving a revoked contract, turning one into ``opt_out`` and moving one to
    another subscriber."""
    if previous is None:
        return
    if previous.revoked:
        raise ContractStoreError(f"contract {contract.id} was revoked at {previous.revoked_at}; "
                                 f"a revoked contract is not revived: give it a new id")
    if contract.consent == "opt_out" and previous.consent != "opt_out":
        raise ContractStoreError(f"contract {contract.id} reads consent {previous.consent}, "
                                 f"it cannot become opt_out: withdrawals made under it are "
                                 f"forgotten once the audit retention has passed, and would "
                                 f"then read as no objection; give it a new id")
    if previous.subscriber != contract.subscriber:
        raise ContractStoreError(f"contract {contract.id} belongs to {previous.subscriber}, "
                                 f"not {contract.subscriber}: a contract never changes "
                                 f"subscriber, give it a new id")


class _Producer:
    """An idempotent, all-replicas-acknowledged producer for the span of an ``async with``."""

    def __init__(self, settings: Settings) -> None:
        self._producer = clients.producer(settings)

    async def __aenter__(self) -> AIOKafkaProducer:
        await self._producer.start()
        return self._producer

    async def __aexit__(self, *_: object) -> None:
        await self._producer.stop()
