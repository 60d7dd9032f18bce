"""Subjects named by people: a subscriber's population and a person's consent, from raw ids.

Raw identifiers given by an operator, as arguments or in a file
(:mod:`streams.state.subject_lists`), are validated and turned into subject references at once,
here, and never written anywhere: only references (persons) or SIRENs (companies) reach Kafka. A
subject given twice is written once.
A withdrawal also sends the subscriber an erasure notice under its own pseudonym of the person,
so it deletes what it already holds.

Each step reads only the secret it needs (:mod:`streams.privacy.secret`): making references
takes the subject secret; only showing a subscriber's pseudonyms (``population add``) and the
erasure notices of a withdrawal take the pseudonym secret, read before anything is written.

Ordering guarantee: these writes return once every replica has them and a fence stands behind
them on every provider partition (:mod:`streams.state.fences`), so an event published after a
``withdraw`` or ``remove`` returned is routed under the new state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.catalog import Catalog
from schemas.serde import AvroSerde
from streams.kafka import clients
from streams.privacy.pseudonyms import Pseudonymiser, SubjectReferences
from streams.privacy.secret import pseudonym_secret, subject_secret
from streams.settings import Settings
from streams.state.bus_state import ConsentStatus
from streams.state.contract import Contract
from streams.state.contract_store import ContractNotFound, ContractStore
from streams.state.erasure import ErasureReason, erasure_notice
from streams.state.ledger import Advance, Channel, SubjectLedger, reporting
from streams.state.subject_lists import GivenSubject, given_kind


@dataclass(frozen=True)
class Subject:
    """A subject as typed (kept in memory only, for the operator's own output) and its ref."""

    given: str
    reference: str


async def find_contract(settings: Settings, contract_id: str) -> Contract:
    """The recorded contract of that id; LookupError naming it otherwise."""
    registry = clients.schema_registry(settings)
    try:
        return await ContractStore(settings, registry, Catalog.load()).get(contract_id)
    except ContractNotFound as exc:
        raise LookupError(str(exc)) from None
    finally:
        registry.close()


def resolve(settings: Settings, given: Sequence[str | GivenSubject],
            on_resolved: Advance | None = None) -> list[Subject]:
    """Validate each identifier (SIREN when 9 digits, else NIR) and make its reference. A plain
    string is named by its position (``subject #N``), a :class:`GivenSubject` by its place;
    ``on_resolved`` is told of each (an HMAC apiece: long for a whole file)."""
    references = SubjectReferences(subject_secret(settings))
    subjects = []
    for position, item in enumerate(given, start=1):
        text, place = ((item, f"subject #{position}") if isinstance(item, str)
                       else (item.text, item.place))
        subjects.append(Subject(text, references.reference(text, given_kind(text),
                                                           field=place)))
        if on_resolved is not None:
            on_resolved(1)
    return subjects


def distinct(subjects: Sequence[Subject]) -> tuple[list[Subject], int]:
    """Each subject once, as first given, and how many repeats were left out. Compared by
    reference: a NIR typed with and without spaces, or a file exported twice over, still names
    one person, to be written (and shown a pseudonym) once."""
    first: dict[str, Subject] = {}
    for subject in subjects:
        first.setdefault(subject.reference, subject)
    return list(first.values()), len(subjects) - len(first)


def pseudonyms(settings: Settings, contract: Contract,
               subjects: Sequence[Subject]) -> list[str]:
    """The contract's subscriber's pseudonym of each subject (a SIREN as is)."""
    mine = Pseudonymiser(pseudonym_secret(settings)).for_subscriber(contract.subscriber)
    return [mine.pseudonym(subject.reference) for subject in subjects]


async def set_population(settings: Settings, contract: Contract, subjects: Sequence[Subject],
                         enrolled: bool, on_written: Advance | None = None) -> None:
    """Enrol or release subjects; returns once the records are durably written and fenced
    (one fence round for all of them)."""
    with clients.schema_registry(settings) as registry:  # a long-lived caller keeps no client
        async with SubjectLedger(settings, AvroSerde(registry), Catalog.load()) as ledger:
            await ledger.record_population(contract.id, [s.reference for s in subjects],
                                           enrolled, on_written)


async def set_consent(settings: Settings, contract: Contract, subjects: Sequence[Subject],
                      status: ConsentStatus, channel: Channel,
                      collected_by: str | None = None, evidence_ref: str | None = None,
                      on_written: Advance | None = None,
                      on_notified: Advance | None = None) -> None:
    """Record grants or withdrawals; a withdrawal also sends erasure notices. ``on_written``
    and ``on_notified`` are told of each record and notice as the broker acknowledges it."""
    notified = pseudonyms(settings, contract, subjects) if status == "withdrawn" else []
    catalog = Catalog.load()
    with clients.schema_registry(settings) as registry:  # a long-lived caller keeps no client
        serde = AvroSerde(registry)
        async with SubjectLedger(settings, serde, catalog) as ledger:
            await ledger.record_consent(contract.id, [s.reference for s in subjects], status,
                                        collected_by or contract.subscriber_siret, channel,
                                        evidence_ref, on_written)
        if notified:
            await send_erasure_notices(settings, serde, catalog, contract, notified,
                                       "consent_withdrawn", on_notified)


async def send_erasure_notices(settings: Settings, serde: AvroSerde, catalog: Catalog,
                               contract: Contract, notified: Sequence[str],
                               reason: ErasureReason, on_sent: Advance | None = None) -> None:
    """Tell the subscriber, under its pseudonyms (``notified``), to erase what it holds on
    these subjects; ``on_sent`` is told of each notice as the broker acknowledges it."""
    schema = catalog.bus_record("erasure_notice").latest
    now = datetime.now(UTC)
    producer = clients.producer(settings)
    await producer.start()
    try:
        sends = []
        for pseudonym in notified:
            notice = erasure_notice(serde, schema, contract, pseudonym, reason, now)
            sends.append(reporting(on_sent, await producer.send(
                contract.delivery_topic, notice.value, key=notice.key, headers=notice.headers)))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
