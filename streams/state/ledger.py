"""The consent and population ledgers: the records that say who may receive what about whom.

How a contract reads them is a routing rule (:mod:`streams.routing.rules`); this module only
writes them, durably and fenced. Records are keyed and partitioned by subject reference, so one
person's changes stay in order; consent keys also carry the recording time, so that compaction keeps
the full history of a person's choices while readers take the latest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Literal

from aiokafka.structs import RecordMetadata

from schemas.catalog import Catalog
from schemas.identifiers import InvalidIdentifier, validate_siret
from schemas.nir_detection import contains_nir
from schemas.registration import value_subject
from schemas.serde import AvroSerde
from streams.kafka import clients
from streams.kafka.partitioning import subject_partition
from streams.kafka.topics import CONSENTS, POPULATION
from streams.settings import Settings
from streams.state.bus_state import ConsentStatus
from streams.state.fences import positions_after, raise_fences

Channel = Literal["online_portal", "counter", "paper_form", "phone"]
"""How a consent decision was collected (kept with it, for the proof)."""

Advance = Callable[[int], None]
"""Told how many more records (or subjects) a long step has done: a command's progress bar."""


class ConsentRefused(ValueError):
    """A consent record the bus will not write; ``field`` names the culprit, never its value."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


MAX_EVIDENCE_REF = 200
"""Longest evidence reference kept: a form number or a session id, not a document."""


def check_consent_texts(collected_by: str | None, evidence_ref: str | None) -> None:
    """Refuse a NIR in the texts an operator types about a consent: they land on
    ``bus.consents`` as they are, where only subject references may name a person. The
    collecting body is a SIRET (the schema says so; the Avro writer does not check patterns),
    the evidence a short printable reference."""
    for field, value in (("collected_by", collected_by), ("evidence_ref", evidence_ref)):
        if value is not None and contains_nir(value):
            raise ConsentRefused(field, "holds what looks like a NIR: a person is named by "
                                        "the subjects given, nowhere else")
    if collected_by is not None:
        try:
            validate_siret(collected_by, "collected_by")
        except InvalidIdentifier as exc:
            raise ConsentRefused(exc.field, exc.reason) from None
    if evidence_ref is not None and (len(evidence_ref) > MAX_EVIDENCE_REF
                                     or not evidence_ref.isprintable()):
        raise ConsentRefused("evidence_ref", f"must be at most {MAX_EVIDENCE_REF} printable "
                                             "characters")


class SubjectLedger:
    """Writes consent and population records; every write is acknowledged by all replicas,
    then fenced (:mod:`streams.state.fences`): no event published after a write returned is routed
    before it."""

    def __init__(self, settings: Settings, serde: AvroSerde, catalog: Catalog) -> None:
        self._settings = settings
        self._serde = serde
        self._consent = catalog.bus_record("consent").latest
        self._population = catalog.bus_record("population").latest
        self._producer = clients.producer(settings)

    async def __aenter__(self) -> SubjectLedger:
        await self._producer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._producer.stop()

    async def _partition(self, topic: str, subject_ref: str) -> int:
        partitions = await self._producer.partitions_for(topic)
        return subject_partition(subject_ref, len(partitions))

    async def record_consent(self, contract_id: str, subject_refs: Iterable[str],
                             status: ConsentStatus, collected_by: str,
                             channel: Channel, evidence_ref: str | None = None,
                             on_written: Advance | None = None) -> int:
        """Record a grant or a withdrawal for each subject; returns how many were written.

        :class:`ConsentRefused` (nothing written) when ``collected_by`` or ``evidence_ref``
        holds a NIR. ``on_written`` is told of each record as the broker acknowledges it.
        """
        check_consent_texts(collected_by, evidence_ref)
        now = datetime.now(UTC)
        sends = []
        for ref in subject_refs:
            record = {"contract_id": contract_id, "subject_ref": ref, "status": status,
                      "recorded_at": now, "collected_by": collected_by, "channel": channel,
                      "evidence_ref": evidence_ref}
            value = self._serde.encode_datum(value_subject(CONSENTS), self._consent, record)
            key = f"{contract_id}/{ref}/{int(now.timestamp() * 1000)}".encode()
            sends.append(reporting(on_written, await self._producer.send(
                CONSENTS, value, key=key, partition=await self._partition(CONSENTS, ref))))
        return await self._fenced(sends)

    async def record_population(self, contract_id: str, subject_refs: Iterable[str],
                                enrolled: bool, on_written: Advance | None = None) -> int:
        """Enrol (or release) each subject in a contract's population; ``on_written`` is told
        of each record as the broker acknowledges it."""
        now = datetime.now(UTC)
        sends = []
        for ref in subject_refs:
            record = {"contract_id": contract_id, "subject_ref": ref, "enrolled": enrolled,
                      "recorded_at": now}
            value = self._serde.encode_datum(value_subject(POPULATION), self._population,
                                             record)
            sends.append(reporting(on_written, await self._producer.send(
                POPULATION, value, key=f"{contract_id}/{ref}".encode(),
                partition=await self._partition(POPULATION, ref))))
        return await self._fenced(sends)

    async def _fenced(self, sends: list[asyncio.Future[RecordMetadata]]) -> int:
        """Wait for the writes, then fence them, once for all of them however many (a fence
        round writes to every provider partition); return how many records were written.
        Gathered rather than awaited one by one: an already acknowledged write would not yield
        to the loop, and the progress told of it (:func:`reporting`) would lag behind."""
        written = await asyncio.gather(*sends)
        await raise_fences(self._settings, self._producer, positions_after(written))
        return len(written)


def reporting(on_written: Advance | None,
              sent: asyncio.Future[RecordMetadata]) -> asyncio.Future[RecordMetadata]:
    """``sent``, telling ``on_written`` once the broker acknowledged it. Told as each record is
    acknowledged, not once all were sent: sending waits for the broker whenever a partition's
    batch is full, so with many records the sending is most of the time."""
    if on_written is not None:
        sent.add_done_callback(lambda done: _acknowledged(done, on_written))
    return sent


def _acknowledged(done: asyncio.Future[RecordMetadata], on_written: Advance) -> None:
    if not done.cancelled() and done.exception() is None:
        on_written(1)
