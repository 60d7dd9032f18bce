"""The file sink's audit chain: each file it deletes, linked into a chain it alone writes.

Every audit chain has a single writer, so that it never forks: the routing chains are the
workers', and the deletions of a contract's file sink are a chain of their own, the records of
``bus.audit`` keyed ``sink.files.<contract>`` (:func:`~streams.audit.chain.file_sink_chain`).
A key always lands on the same partition, so the chain is read in offset order like any other,
and ``circulation audit verify`` checks it apart from the routing chain it shares a partition
with. The sink reads its chain's head back from ``bus.audit`` when it starts, never guessing.

A deletion is audited *before* the file goes: a crash in between leaves the file and its
record, and the sink, started again, finds that its chain's head already records that very
deletion (same day, same count) and deletes the file without recording it twice. The other
order could lose the record of a deletion that happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas.catalog import Catalog
from schemas.registration import value_subject
from schemas.serde import AvroSerde
from streams.audit.chain import DELETED, GENESIS, deletion_record, file_sink_chain
from streams.audit.encoder import AuditEncoder
from streams.audit.heads import recover_named_head
from streams.kafka.topics import AUDIT
from streams.settings import Settings
from streams.state.contract import Contract

AUDIT_SUBJECT = value_subject(AUDIT)


class DeletionChain:
    """The chain of one contract's file sink: its head, and each deletion written to it."""

    def __init__(self, settings: Settings, serde: AvroSerde, producer: AIOKafkaProducer,
                 contract: Contract) -> None:
        self._settings = settings
        self._serde = serde
        self._producer = producer
        self._contract = contract
        self.name = file_sink_chain(contract.id)
        self._schema = Catalog.load().bus_record("audit").latest
        self._encoder = AuditEncoder(self._schema.raw)
        self._partition = 0
        self._head: Mapping[str, Any] | None = None

    async def start(self) -> None:
        """Read the chain's head back from ``bus.audit``, and the audit schema's id (off the
        event loop): a sink that cannot do either stops before deleting anything."""
        self._partition, self._head = await recover_named_head(
            self._settings, self._serde, self._schema.parsed, self.name)
        await self._serde.fetch_ids([(AUDIT_SUBJECT, self._schema)])

    def recorded(self, day: date, deliveries: int) -> bool:
        """Whether the chain's last record is the deletion of the file of ``day`` holding
        ``deliveries`` deliveries: a sink stopped between recording and deleting it."""
        head = self._head
        return (head is not None and head["decision"] == DELETED
                and head["file_day"] == day and head["deliveries_deleted"] == deliveries)

    async def record(self, day: date, deliveries: int, at: datetime) -> None:
        """Write the deletion of the file of ``day`` to the chain, once the broker has it from
        every replica (the producer's policy)."""
        previous = GENESIS if self._head is None else str(self._head["record_hash"])
        record = deletion_record(previous, contract_id=self._contract.id,
                                 subscriber=self._contract.subscriber, day=day,
                                 deliveries=deliveries, deleted_at=at)
        value = self._serde.framed(AUDIT_SUBJECT, self._schema, self._encoder.encode(record))
        await self._producer.send_and_wait(AUDIT, value, key=self.name.encode(),
                                           partition=self._partition)
        self._head = record
