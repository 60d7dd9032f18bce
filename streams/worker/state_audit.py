"""The worker's audit of the state changes it applies, and the erasure notices they cause.

Its state follower tells it each consent, population and contract record it applies
(:class:`~streams.state.follower.StateWitness`); the routing service writes what it collected
(:meth:`StateAudit.take`) to the chains it owns, under the same lock as its routing decisions, so
each chain keeps one writer and records in order (:mod:`streams.audit.state_changes`).

- A consent or an enrolment is audited by the worker holding its partition. A removal of a
  person an ``enrolled`` contract followed also sends the subscriber an erasure notice
  (``population_removed``) under its pseudonym of the person, with an id derived from the state
  record, so that a notice sent twice is recognised. A withdrawal's notice is sent by whoever
  recorded it (the command or the portal, which hold the pseudonym secret and answer the
  person); its audit record says so.
- A contract's change, and its end (revocation, or its last valid day over), are audited by the
  worker holding partition 0. The end is noticed by the worker itself, at each contract applied
  and on a timer, and sends one contract-wide ``contract_ended`` notice
  (:mod:`streams.state.erasure`).

Exactly once across restarts and rebalances: taking a partition, the worker reads back the last
audit record of each of its state keys and reads the state partition again from the next offset
(records are plain overwrites: reading them twice changes nothing), telling only later records.
Ends are remembered within a worker's life by their notice's id; a worker taking partition 0
over sends the notices of ends after its predecessor's last contract or end record (each such
write looked for ends first), and of contracts recorded since the last contract record audited
(a contract re-applied with a past end). A bus whose contracts were never audited starts now:
ends older than this version of the bus are not reached back for.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.catalog import Catalog
from schemas.registration import value_subject
from schemas.serde import AvroSerde, WriterSchema
from streams.audit.chain import AuditChains
from streams.audit.encoder import AuditEncoder
from streams.audit.heads import last_of_keys
from streams.audit.state_changes import (
    CONTRACT_ENDED_KEY,
    NoticeReason,
    StateChange,
    StatePosition,
    state_change_record,
    state_key,
)
from streams.kafka.admin import topic_partitions
from streams.kafka.topics import AUDIT, CONSENTS, CONTRACTS, POPULATION
from streams.privacy.pseudonyms import Pseudonymiser
from streams.routing.records import Outgoing
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.directory import Standing
from streams.state.erasure import contract_end, ending_notice_id, erasure_notice

AUDIT_SUBJECT = value_subject(AUDIT)
CONTRACTS_PARTITION = 0
"""The provider partition whose worker audits the contracts' changes and ends."""
_STATE_NOTICES = uuid.UUID("0b7c43de-51a4-5e9f-8d2e-6a9f1c3b7e20")
"""The namespace of the ids of notices caused by a state record (uuid5 of its position)."""


@dataclass(frozen=True)
class Pending:
    """A change to audit on ``chain``'s partition, and the notice it sends (its contract and
    the subject's pseudonym, None for the whole contract)."""

    partition: int
    change: StateChange
    notice: tuple[Contract, str | None] | None = None


class StateAudit:
    """What the worker has to audit of the state, from what its follower applied."""

    def __init__(self, settings: Settings, serde: AvroSerde, catalog: Catalog,
                 pseudonymiser: Pseudonymiser,
                 contracts: Callable[[], Mapping[str, Contract]], chains: AuditChains,
                 settle: Callable[[], Any]) -> None:
        """``settle``: awaited before reading back the audit trail, so that this worker's own
        state audit writes have landed."""
        self._settings = settings
        self._serde = serde
        self._reader = catalog.bus_record("audit").latest.parsed
        self._audit_schema = catalog.bus_record("audit").latest
        self._encoder = AuditEncoder(self._audit_schema.raw)
        self.notice_schema: WriterSchema = catalog.bus_record("erasure_notice").latest
        self._pseudonymiser = pseudonymiser
        self._contracts = contracts
        self._settle = settle
        self._chains = chains
        self._from: dict[tuple[str, int], int] = {}
        self._pending: list[Pending] = []
        self._contract_log: list[tuple[StatePosition, Mapping[str, Any]]] = []
        self._contract_at: dict[str, StatePosition] = {}
        self._contracts_known = False
        self._contract_partitions: list[int] = []
        self._contracts_from: dict[int, int] = {}
        """Per partition of the contracts topic, the offset from which its records are
        audited (once this worker audits the contracts)."""
        self._taken_from: dict[int, int] = {}
        self._since = datetime.now(UTC)
        """Every contract's end up to this instant was notified (by this worker or the one
        before it on partition 0)."""
        self._sent: set[str] = set()
        self.changed: Callable[[], None] = lambda: None
        """Called when something is pending (wakes the writer)."""

    async def opening(self, partitions: Sequence[int]) -> Mapping[tuple[str, int], int]:
        """Learn from the audit trail which state records of ``partitions`` were audited; the
        offsets to read them from again."""
        await self._settle()
        self.released(partitions)
        for partition in partitions:
            keys = [state_key(CONSENTS, partition), state_key(POPULATION, partition)]
            contracts = partition == CONTRACTS_PARTITION
            if contracts:
                self._contract_partitions = sorted(tp.partition for tp in await topic_partitions(
                    self._settings, [CONTRACTS]))
                keys += [state_key(CONTRACTS, p) for p in self._contract_partitions]
                keys.append(CONTRACT_ENDED_KEY)
            last = await last_of_keys(self._settings, self._serde, self._reader,
                                      self._chains.chain_of(partition), keys)
            for topic in (CONSENTS, POPULATION):
                self._from[(topic, partition)] = _next(last[state_key(topic, partition)])
            if contracts:
                self._learn_contracts(last)
        return {key: offset for key, offset in self._from.items() if key[1] in partitions}

    def _learn_contracts(self, last: Mapping[bytes, Mapping[str, Any] | None]) -> None:
        self._taken_from = {p: _next(last.get(state_key(CONTRACTS, p)))
                            for p in self._contract_partitions}
        self._contracts_from = dict(self._taken_from)
        # Each write of chain 0's contract records looked for ends first: every end up to the
        # newest of them was notified. None at all: the audit of contracts starts now, and
        # ends before it (older than this version of the bus) are not reached back for.
        audited = [record["decided_at"] for key, record in last.items()
                   if record is not None and key != state_key(CONSENTS, CONTRACTS_PARTITION)
                   and key != state_key(POPULATION, CONTRACTS_PARTITION)]
        self._since = max(audited, default=datetime.now(UTC))
        self._contracts_known = True

    def released(self, partitions: Iterable[int]) -> None:
        """Partitions given away: their next owner audits what is pending of them."""
        gone = set(partitions)
        self._pending = [p for p in self._pending if p.partition not in gone]
        self._from = {key: offset for key, offset in self._from.items() if key[1] not in gone}
        if CONTRACTS_PARTITION in gone:
            self._contracts_known = False

    def wants(self, topic: str, partition: int, offset: int) -> bool:
        return offset >= self._from.get((topic, partition), math.inf)

    def applied(self, topic: str, partition: int, offset: int, record: Mapping[str, Any],
                before: Standing | None) -> None:
        position = StatePosition(topic, partition, offset)
        if topic == CONTRACTS:
            self._contract_at[str(record["id"])] = position
            self._contract_log.append((position, record))
        else:
            self._from[(topic, partition)] = offset + 1
            self._pending.append(self._subject_change(position, record, before))
        self.changed()

    def _subject_change(self, position: StatePosition, record: Mapping[str, Any],
                        before: Standing | None) -> Pending:
        contract = self._contracts().get(record["contract_id"])
        subscriber = contract.subscriber if contract is not None else ""
        subject = record["subject_ref"]
        common = {"contract_id": record["contract_id"], "subscriber": subscriber,
                  "at": record["recorded_at"], "position": position, "subject_ref": subject}
        if position.topic == CONSENTS:
            withdrawn = record["status"] == "withdrawn"
            return Pending(position.partition, StateChange(
                "consent_withdrawn" if withdrawn else "consent_granted",
                channel=record["channel"], principal=record["collected_by"],
                evidence_ref=record["evidence_ref"],
                erasure_reason="consent_withdrawn" if withdrawn else None, **common))
        if record["enrolled"]:
            return Pending(position.partition, StateChange("enrolled", **common))
        if (contract is None or contract.population != "enrolled" or before is None
                or not before.enrolled):  # a contract following everybody still follows them
            return Pending(position.partition, StateChange("removed", **common))
        pseudonym = self._pseudonymiser.pseudonym(contract.subscriber, subject)
        notice_id = str(uuid.uuid5(_STATE_NOTICES, str(position)))
        return Pending(position.partition, StateChange(
            "removed", erasure_reason="population_removed", notice_id=notice_id, **common),
            (contract, pseudonym))

    def partitions(self, holds: Callable[[int], bool]) -> set[int]:
        """The provider partitions whose chains the pending changes go to (partition 0
        whenever this worker audits the contracts)."""
        wanted = {p.partition for p in self._pending}
        if self._contracts_known and holds(CONTRACTS_PARTITION):
            wanted.add(CONTRACTS_PARTITION)
        return wanted

    def encodings(self, now: datetime) -> list[tuple[str, WriterSchema]]:
        """The registry ids what is due now needs, to fetch before :meth:`take`."""
        contracts = [p.notice[0] for p in self._pending if p.notice is not None]
        contracts += [c for c in self._contracts().values() if self._due_end(c, now)]
        return [(AUDIT_SUBJECT, self._audit_schema),
                *((c.erasure_subject, self.notice_schema) for c in contracts)]

    def take(self, now: datetime, ready: Callable[[int], bool]) -> list[Pending]:
        """Everything due now on the partitions ``ready`` (held, their chain's head known),
        in order: contract changes, contracts' ends, then consents and enrolments."""
        taken: list[Pending] = []
        if self._contracts_known and ready(CONTRACTS_PARTITION):
            taken += self._contract_changes(now)
            taken += self._ends(now)
        kept: list[Pending] = []
        for pending in self._pending:
            (taken if ready(pending.partition) else kept).append(pending)
        self._pending = kept
        return taken

    def _contract_changes(self, now: datetime) -> list[Pending]:
        log, self._contract_log = self._contract_log, []
        changes = []
        for position, record in log:
            if position.offset < self._contracts_from.get(position.partition, 0):
                continue
            self._contracts_from[position.partition] = position.offset + 1
            changes.append(Pending(CONTRACTS_PARTITION, StateChange(
                "contract_revoked" if record["revoked"] else "contract_applied",
                str(record["id"]), str(record["subscriber"]), now, position)))
        return changes

    def _due_end(self, contract: Contract, now: datetime) -> datetime | None:
        """When ``contract`` ended, if it did by ``now`` and its end's notice is still to
        send; None otherwise."""
        end = contract_end(contract)
        if end is None or end > now or ending_notice_id(contract.id, end) in self._sent:
            return None
        if end > self._since:
            return end
        at = self._contract_at.get(contract.id)  # recorded after the last one audited?
        recorded_since = at is not None and at.offset >= self._taken_from.get(at.partition, 0)
        return end if recorded_since else None

    def _ends(self, now: datetime) -> list[Pending]:
        ends = []
        for contract in sorted(self._contracts().values(), key=lambda c: c.id):
            end = self._due_end(contract, now)
            if end is None:
                continue
            notice_id = ending_notice_id(contract.id, end)
            self._sent.add(notice_id)
            ends.append(Pending(CONTRACTS_PARTITION, StateChange(
                "contract_ended", contract.id, contract.subscriber, now,
                erasure_reason="contract_ended", notice_id=notice_id), (contract, None)))
        return ends

    def outgoing(self, taken: Sequence[Pending], chains: AuditChains,
                 now: datetime) -> list[Outgoing]:
        """The audit records of ``taken``, linked to ``chains``' heads, and their notices."""
        out = []
        for pending in taken:
            chain = chains.chain_of(pending.partition)
            record = state_change_record(chains, chain, pending.change)
            out.append(Outgoing(AUDIT, pending.change.key, self._serde.framed(
                AUDIT_SUBJECT, self._audit_schema, self._encoder.encode(record)), [], chain))
            if pending.notice is not None:
                out.append(self._notice(pending.change, *pending.notice, now))
        return out

    def _notice(self, change: StateChange, contract: Contract, pseudonym: str | None,
                now: datetime) -> Outgoing:
        reason: NoticeReason = change.erasure_reason or "contract_ended"
        notice = erasure_notice(self._serde, self.notice_schema, contract, pseudonym, reason,
                                now, change.notice_id)
        return Outgoing(contract.delivery_topic, notice.key, notice.value, notice.headers)


def _next(record: Mapping[str, Any] | None) -> int:
    """The offset after the state record an audit record names (0 when none)."""
    if record is None or record.get("state_offset") is None:
        return 0
    return int(record["state_offset"]) + 1
