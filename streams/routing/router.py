"""The routing worker's hot path: a batch of provider records in, every record to write out.

For each event: decode (Confluent wire format, the dataset's latest schema as reader), validate
(the catalog's constraints), check the subject is pseudonymous and the event on its subject's
partition, read the subject's file in the reference directory, then for every ``population: all``
contract naming the dataset and every ``enrolled`` one the file names, decide, project,
pseudonymise, encode and stamp; every decision also gives an audit record. Anything wrong with
one record (undecodable, invalid, headers that are missing, null, repeated or that claim another
provider or dataset than the topic's, a subject of the wrong kind, a key other than the subject,
an event off its subject's partition) makes it a dead letter with its origin, and the batch goes
on.

A contract that no longer compiles (a recorded contract naming a dataset or field the catalog no
longer has) is logged once and left out, and every event it would have decided is audited as
withheld for ``contract_invalid``: nothing is silent, the other contracts keep routing, and the
events can be routed again once the contract is fixed.

Everything per contract (terms, delivery schema and union branch, per-subscriber HMAC key) is
compiled once per contract change, not per event. Nothing is logged per decision: the audit
record is the trace of each one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import fastavro
import structlog

from schemas.catalog import Catalog, CatalogError, Dataset
from schemas.codec import encode
from schemas.constraints import (
    company_identifier_paths,
    compile_checker,
    holds_plain_numbers,
)
from schemas.nir_detection import may_hold_nir, nir_locations
from schemas.projection import delivery_schema, full_name, project_datum, union_value
from schemas.registration import value_subject
from schemas.registry import canonical
from schemas.serde import AvroSerde, WriterSchema
from streams.audit.chain import AuditChains
from streams.audit.encoder import AuditEncoder
from streams.kafka.topics import AUDIT
from streams.privacy.pseudonyms import Pseudonymiser, subject_kind
from streams.routing.dead_letters import DeadLetters
from streams.routing.delivery import DeliveryChannel, EventHeaders, extension_headers
from streams.routing.records import Outgoing, SourceRecord, UnroutableRecord
from streams.routing.replay_markers import MarkerRefused, is_replay_marker
from streams.routing.rules import (
    NO_TERMS,
    ContractTerms,
    DatasetTerms,
    Decision,
    decide_all,
    terms_by_dataset,
)
from streams.routing.tally import RoutingTally
from streams.state.bus_state import BusState
from streams.state.contract import Contract
from streams.state.directory import SubjectFile

log = structlog.get_logger(__name__)
AUDIT_SUBJECT = value_subject(AUDIT)
RECORD_FAULTS = (ValueError, LookupError, TypeError, ArithmeticError, EOFError, RecursionError)
"""What reading, checking or projecting one record may raise because of that record alone: it
becomes a dead letter. Anything else (the registry unreachable, a bug) is the bus's own failure
and stops the batch, which is replayed: turning it into dead letters would lose valid events."""
CONTRACT_FAULTS = (LookupError, ValueError, TypeError, CatalogError)
"""What compiling a recorded contract against today's catalog may raise when it no longer fits
it (a dataset or field removed since)."""

class Router:
    """Routes provider records under the current contracts, consents and populations."""

    def __init__(self, catalog: Catalog, serde: AvroSerde, pseudonymiser: Pseudonymiser) -> None:
        self.catalog = catalog
        self.serde = serde
        self.pseudonymiser = pseudonymiser
        self._audit_schema = catalog.bus_record("audit").latest
        self._dead_letters = DeadLetters(catalog, serde)
        self.chains = AuditChains()
        self._audit_encoder = AuditEncoder(self._audit_schema.raw)
        self._generation = -1
        self._compiled_on: date | None = None
        self._terms: dict[str, DatasetTerms] = {}
        self.invalid_contracts: frozenset[str] = frozenset()
        """Recorded contracts that no longer compile against the catalog (for the metrics)."""
        self._plans: dict[str, _CompiledContract] = {}
        self._checkers: dict[str, Callable[[Any], None]] = {}
        self._scans: dict[str, tuple[frozenset[str], bool]] = {}
        """Per dataset: the SIREN/SIRET paths a NIR scan skips, and whether it has numbers."""
        self._expiries: dict[str, bytes] = {}
        self._encodings: tuple[tuple[str, WriterSchema], ...] | None = None
        self.tally = RoutingTally()
        """Decisions and dead letters since the worker last took them (for the metrics)."""

    def _compile(self, state: BusState, day: date) -> None:
        """Rebuild the routing index when the contracts changed (or the day did). A contract's
        plans are compiled again only when its record changed: with tens of thousands of
        contracts, one applied must not recompile all the others."""
        if (state.generation, day) == (self._generation, self._compiled_on):
            return
        terms = terms_by_dataset(state.contracts, day)
        named = {t.contract_id for dataset in terms.values()
                 for t in (*dataset.everyone, *dataset.followers.values())}
        self._plans = {cid: self._plans_of(state.contracts[cid]) for cid in sorted(named)}
        invalid = {cid for cid, compiled in self._plans.items() if compiled.plans is None}
        self._terms = {dataset: _invalidated(candidates, invalid)
                       for dataset, candidates in terms.items()}
        self.invalid_contracts = frozenset(invalid)
        self.tally.invalid_contracts = len(invalid)
        self._generation = state.generation
        self._compiled_on = day
        self._encodings = None

    def _plans_of(self, contract: Contract) -> _CompiledContract:
        """``contract``'s plans, reused when this very record was compiled before."""
        compiled = self._plans.get(contract.id)
        if compiled is not None and compiled.contract == contract:
            return compiled
        try:
            return _CompiledContract(contract, self._contract_plans(contract))
        except CONTRACT_FAULTS as exc:
            log.error("a recorded contract no longer compiles against the catalog: its "
                      "events are audited as withheld (contract_invalid) until it is fixed",
                      contract=contract.id, error=type(exc).__name__)
            return _CompiledContract(contract, None)

    def _contract_plans(self, contract: Contract) -> dict[str, _DeliveryPlan]:
        """How ``contract`` delivers each of its datasets (raises when it no longer compiles)."""
        records = contract.projected_records(self.catalog)
        schema = _DeliverySchema.of(canonical(delivery_schema(records)))
        channel = DeliveryChannel(
            topic=contract.delivery_topic, subject=contract.delivery_subject,
            retention=timedelta(milliseconds=contract.retention_ms),
            pseudonyms=self.pseudonymiser.for_subscriber(contract.subscriber),
            extensions=extension_headers(contract),
        )
        return {dataset: _DeliveryPlan.of(channel, schema, full_name(record), fields)
                for (dataset, fields), record in zip(contract.datasets.items(), records,
                                                     strict=True)}

    def encodings(self, state: BusState, now: datetime) -> tuple[tuple[str, WriterSchema], ...]:
        """Every (subject, schema) :meth:`route` may frame a record with under ``state`` at
        ``now``: audit records, dead letters and each contract's deliveries. The worker has
        their registry ids fetched, off its event loop, before it routes. The same object is
        returned until the contracts (or the day) change, so that a caller may tell a list it
        already checked."""
        self._compile(state, now.date())
        if self._encodings is None:
            deliveries = [(plan.channel.subject, plan.schema)
                          for compiled in self._plans.values()
                          for plan in (compiled.plans or {}).values()]
            self._encodings = ((AUDIT_SUBJECT, self._audit_schema),
                               self._dead_letters.encoding, *deliveries)
        return self._encodings

    def route(self, records: Iterable[SourceRecord], state: BusState,
              now: datetime | None = None) -> list[Outgoing]:
        """Everything to write for ``records``: deliveries, audit records, dead letters."""
        routed_at = now or datetime.now(UTC)
        routed_at = routed_at.replace(microsecond=routed_at.microsecond // 1000 * 1000)
        self._compile(state, routed_at.date())
        self._expiries = {}  # one expiry per contract and batch
        out: list[Outgoing] = []
        for record in records:
            try:
                out.extend(self._route_one(record, state, routed_at))
            except RECORD_FAULTS as exc:
                self.tally.dead_letter(record.topic)
                out.append(self._dead_letters.letter(record, exc, routed_at))
        return out

    def _dataset_of(self, topic: str) -> tuple[str, Dataset]:
        _, provider, dataset_id = topic.split(".", 2)
        self.catalog.topic_for(provider, dataset_id)  # refuses a provider not in the catalog
        return provider, self.catalog.dataset(dataset_id)

    def _route_one(self, record: SourceRecord, state: BusState,
                   routed_at: datetime) -> list[Outgoing]:
        if record.value is None:
            raise UnroutableRecord("value", "empty (a tombstone) on a provider topic")
        if is_replay_marker(record.headers):  # one the worker could not read, or forged
            raise MarkerRefused("a record marked as a replay marker that the worker could not "
                                "read as one (its key, or the offsets it names)")
        provider, dataset = self._dataset_of(record.topic)
        event = EventHeaders.read(record.headers, provider, dataset.id)
        kind = subject_kind(event.subject, "ce_subject")  # a raw NIR: a bug upstream
        if kind != dataset.subject_kind:
            raise UnroutableRecord("ce_subject", f"a {kind} subject on a dataset about a "
                                   f"{dataset.subject_kind}")
        if record.key != event.subject.encode():
            raise UnroutableRecord("key", "not the event's subject: a provider record is keyed "
                                   "by its subject reference (or SIREN), as ce_subject names it")
        _, datum = self.serde.decode(record.value, dataset.latest.parsed)
        self._checker(dataset)(datum)  # the catalog's value constraints
        hidden = self._hidden_nirs(dataset, record.value, datum)
        if hidden:  # a provider writing without the edge, or free text it did not check
            raise UnroutableRecord(hidden[0], "holds a personal identifier (a NIR)")
        file = self._file_of(state, event.subject, record.partition)
        out: list[Outgoing] = []
        chain = self.chains.chain_of(record.partition)
        bodies: dict[str, bytes] = {}  # this event's Avro body per delivery shape
        for decision in decide_all(self._terms.get(dataset.id, NO_TERMS), file,
                                   routed_at.date()):
            delivery_id = None
            if decision.delivered:
                delivery, delivery_id = self._delivery(decision.terms, event, datum, routed_at,
                                                       bodies)
                out.append(delivery)
            out.append(self._audit(chain, decision, event, provider, routed_at, delivery_id,
                                   replay=record.replay))
        return out

    @staticmethod
    def _file_of(state: BusState, subject: str, partition: int) -> SubjectFile:
        """The subject's file, from the state of the partition its event was read from. An
        event on another partition than its subject's (a producer keying or partitioning
        otherwise than by subject reference) would be decided against another partition's
        state, which a worker may not even hold: it is refused."""
        expected = state.directory.partition_of(subject)
        if expected is not None and expected != partition:
            raise UnroutableRecord("key", "the event is not on its subject's partition: a "
                                   "provider record is keyed by its subject reference and placed "
                                   "by murmur2 of the key (the Java client's default; "
                                   "librdkafka: partitioner=murmur2_random)")
        return state.directory.file_of(subject, partition)

    def _audit(self, chain: int, decision: Decision, event: EventHeaders, provider: str,
               routed_at: datetime, delivery_id: str | None, *, replay: bool) -> Outgoing:
        """The audit record of ``decision``, linked into ``chain``, counted in the tally; a
        delivery's names the delivery's own id (``delivery_id``), its join to the delivery, and
        a replayed event's decisions are marked ``replay``."""
        terms = decision.terms
        subscriber = terms.contract.subscriber
        audit = self.chains.record(
            chain, event_id=event.id, contract_id=terms.contract_id, subscriber=subscriber,
            provider=provider, dataset=terms.dataset, subject_ref=event.subject,
            reason=decision.reason, fields_delivered=terms.fields, decided_at=routed_at,
            delivery_id=delivery_id, replay=replay)
        written = Outgoing(AUDIT, event.subject.encode(), self.serde.framed(
            AUDIT_SUBJECT, self._audit_schema, self._audit_encoder.encode(audit)), [],
            partition=chain)
        self.tally.decision(subscriber, terms.contract_id, decision.reason)
        return written

    def _hidden_nirs(self, dataset: Dataset, value: bytes, datum: Any) -> list[str]:
        """Where the event's data holds a NIR. Its strings are walked only when its encoded
        bytes hold a run long enough for one (or numbers Avro writes in binary): walking every
        string of every event would cost as much as decoding it."""
        scan = self._scans.get(dataset.id)
        if scan is None:
            scan = self._scans[dataset.id] = (company_identifier_paths(dataset.latest.raw),
                                              holds_plain_numbers(dataset.latest.raw))
        skip, numbers = scan
        if not numbers and not may_hold_nir(value):
            return []
        return nir_locations(datum, skip=skip, path="data")

    def _checker(self, dataset: Dataset) -> Callable[[Any], None]:
        checker = self._checkers.get(dataset.id)
        if checker is None:
            checker = self._checkers[dataset.id] = compile_checker(dataset.latest.raw)
        return checker

    def _delivery(self, terms: ContractTerms, event: EventHeaders, datum: dict[str, Any],
                  routed_at: datetime, bodies: dict[str, bytes]) -> tuple[Outgoing, str]:
        """The delivery of ``event`` under ``terms``, and its own id (for its audit record)."""
        plan = self._plans[terms.contract_id].plan(terms.dataset)
        channel = plan.channel
        pseudonym = channel.pseudonyms.pseudonym(event.subject).encode()
        body = bodies.get(plan.shape)
        if body is None:
            body = bodies[plan.shape] = encode(plan.schema.parsed, plan.projected(datum))
        value = self.serde.framed(channel.subject, plan.schema, body)
        expires = self._expiries.get(terms.contract_id)
        if expires is None:
            expires = self._expiries[terms.contract_id] = channel.expiry(routed_at)
        delivery_id = channel.delivery_id(event)
        return Outgoing(channel.topic, pseudonym, value,
                        channel.headers(event, delivery_id, pseudonym, expires)), delivery_id


def _invalidated(terms: DatasetTerms, invalid: set[str]) -> DatasetTerms:
    """``terms`` with those of contracts that no longer compile marked so."""
    if not invalid:
        return terms
    return DatasetTerms(
        tuple(t.invalidated() if t.contract_id in invalid else t for t in terms.everyone),
        {cid: t.invalidated() if cid in invalid else t for cid, t in terms.followers.items()})


@dataclass(frozen=True)
class _CompiledContract:
    """A contract record and its delivery plans by dataset (None: it no longer compiles)."""

    contract: Contract
    plans: dict[str, _DeliveryPlan] | None

    def plan(self, dataset: str) -> _DeliveryPlan:
        if self.plans is None:
            raise LookupError(f"contract {self.contract.id} has no plan: it does not compile")
        return self.plans[dataset]


@dataclass(frozen=True)
class _DeliveryPlan:
    """How one contract delivers one dataset: its channel, schema, fields and union branch,
    compiled (and checked) once per contract change rather than per delivery."""

    channel: DeliveryChannel
    schema: _DeliverySchema
    fields: tuple[str, ...]
    branch: str | None
    """The projected record's full name when the delivery schema is a union (several
    datasets): fastavro is then told the branch rather than left to guess it."""
    shape: str
    """What the Avro body depends on, as text. For a single record, its fields alone (not its
    name or doc), so contracts whose deliveries have the same fields, say several communes on
    one canteen template, share one encoding of each event. For a union, the whole schema and
    the branch: its names are the contract's own, so it is encoded per contract."""

    @classmethod
    def of(cls, channel: DeliveryChannel, schema: _DeliverySchema, record_name: str,
           fields: tuple[str, ...]) -> _DeliveryPlan:
        """The plan for the dataset whose projected record is ``record_name`` in ``schema``."""
        value = union_value(schema.raw, record_name, {})  # checks the name
        if isinstance(value, tuple):
            return cls(channel, schema, fields, value[0], f"{value[0]}\n{schema.text}")
        return cls(channel, schema, fields, None,
                   json.dumps(schema.raw["fields"], sort_keys=True))

    def projected(self, datum: dict[str, Any]) -> Any:
        """The datum projected on the contract's fields, as fastavro writes it."""
        projected = project_datum(datum, self.fields)
        return projected if self.branch is None else (self.branch, projected)


@dataclass(frozen=True)
class _DeliverySchema:
    """A contract's delivery schema: registry text, fastavro form, and JSON form for unions."""

    text: str
    parsed: Any
    raw: Any

    @classmethod
    def of(cls, text: str) -> _DeliverySchema:
        raw = json.loads(text)
        return cls(text, fastavro.parse_schema(raw), raw)
