"""Consent and population: who may receive what about whom, and the records that say so.

A contract's ``consent`` mode decides how a person's recorded choice is read: ``not_required``
ignores it, ``opt_in`` needs a standing grant, ``opt_out`` passes unless the person objected. A
contract's ``population`` decides whether the subscriber receives everyone's changes (``all``)
or only those of persons it enrolled (``enrolled``), the way the Belgian Crossroads Bank for
Social Security forwards a change only to institutions that hold a file on that person.

Records are keyed and partitioned by subject reference, so one person's changes stay in order;
consent keys also carry the recording time, so that compaction keeps the full history of a
person's choices while readers take the latest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from schemas.catalog import Catalog
from schemas.registration import value_subject
from schemas.serde import AvroSerde
from streams.kafka.topics import CONSENTS, POPULATION
from streams.settings import Settings
from streams.state.fences import positions_after, raise_fences
from streams.worker.sink import kafka_partition

ConsentMode = Literal["opt_in", "opt_out", "not_required"]
PopulationMode = Literal["enrolled", "all"]
WithheldReason = Literal["not_enrolled", "no_consent", "objection", "contract_inactive"]
Channel = Literal["online_portal", "counter", "paper_form", "phone"]


def population_reason(mode: PopulationMode, enrolled: bool) -> WithheldReason | None:
    """Why a contract's population rule withholds this subject, or None when it passes."""
    if mode == "enrolled" and not enrolled:
        return "not_enrolled"
    return None


def consent_reason(mode: ConsentMode, status: str | None) -> WithheldReason | None:
    """Why a contract's consent rule withholds, given the person's latest recorded choice."""
    if mode == "opt_in" and status != "granted":
        return "no_consent"
    if mode == "opt_out" and status == "withdrawn":
        return "objection"
    return None


def subject_partition(subject_ref: str, partitions: int) -> int:
    """The partition of a subject's records, as Kafka's default partitioner would choose it."""
    return kafka_partition(subject_ref.encode(), partitions)


class SubjectLedger:
    """Writes consent and population records; every write is acknowledged by all replicas,
    then fenced (:mod:`streams.state.fences`): no event published after a write returned is routed
    before it."""

    def __init__(self, settings: Settings, serde: AvroSerde, catalog: Catalog) -> None:
        self._settings = settings
        self._serde = serde
        self._consent = catalog.bus_record("consent").latest
        self._population = catalog.bus_record("population").latest
        self._producer = AIOKafkaProducer(**settings.kafka_client_options(), acks="all",
                                          enable_idempotence=True)

    async def __aenter__(self) -> SubjectLedger:
        await self._producer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._producer.stop()

    async def _partition(self, topic: str, subject_ref: str) -> int:
        partitions = await self._producer.partitions_for(topic)
        return subject_partition(subject_ref, len(partitions))

    async def record_consent(self, contract_id: str, subject_refs: Iterable[str],
                             status: Literal["granted", "withdrawn"], collected_by: str,
                             channel: Channel, evidence_ref: str | None = None) -> int:
        """Record a grant or a withdrawal for each subject; returns how many were written."""
        now = datetime.now(UTC)
        sends = []
        for ref in subject_refs:
            record = {"contract_id": contract_id, "subject_ref": ref, "status": status,
                      "recorded_at": now, "collected_by": collected_by, "channel": channel,
                      "evidence_ref": evidence_ref}
            value = self._serde.encode_datum(value_subject(CONSENTS), self._consent, record)
            key = f"{contract_id}/{ref}/{int(now.timestamp() * 1000)}".encode()
            sends.append(await self._producer.send(
                CONSENTS, value, key=key, partition=await self._partition(CONSENTS, ref)))
        return await self._fenced(sends)

    async def record_population(self, contract_id: str, subject_refs: Iterable[str],
                                enrolled: bool) -> int:
        """Enrol (or release) each subject in a contract's population."""
        now = datetime.now(UTC)
        sends = []
        for ref in subject_refs:
            record = {"contract_id": contract_id, "subject_ref": ref, "enrolled": enrolled,
                      "recorded_at": now}
            value = self._serde.encode_datum(value_subject(POPULATION), self._population,
                                             record)
            sends.append(await self._producer.send(
                POPULATION, value, key=f"{contract_id}/{ref}".encode(),
                partition=await self._partition(POPULATION, ref)))
        return await self._fenced(sends)

    async def _fenced(self, sends: list[asyncio.Future[RecordMetadata]]) -> int:
        """Wait for the writes, then fence them; return how many records were written."""
        written = [await sent for sent in sends]
        await raise_fences(self._settings, self._producer, positions_after(written))
        return len(written)
