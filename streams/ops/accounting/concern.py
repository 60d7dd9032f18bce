"""Which contracts certainly had to decide an event: the routing rule, replayed on the state
topics and the fences.

Routing decides an event under every ``population: all`` contract naming its dataset and every
``enrolled`` one that follows its subject, among the contracts still in the routing index on the
day it is routed (:func:`streams.routing.rules.terms_by_dataset`). Reconciling asks the same of
the state as it stands now, and trusts that answer only where it is certain the event was
routed under it:

- a state record (a contract, an enrolment or its release) was in force for an event when a
  fence naming a position past that record precedes the event on its partition: a worker routes
  nothing behind a fence before its state reached the fence's positions
  (:mod:`streams.state.fences`); or when the record is older than the ``horizon``, the oldest
  provider record read, so that its command had long returned;
- the state topics are compacted, so only the latest record of a contract, or of a contract and
  subject, is known: an event routed before it was in force was decided under an earlier state
  no longer on the bus, and binds nothing here.

So a missing outcome is reported only where routing certainly owed one; an outcome from a
contract the rule does not name for certain is accepted as it is (the audit trail, not the
accounting, proves what the bus decided then).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from streams.ops.accounting.books import Event, Place
from streams.routing.rules import still_audited
from streams.state.contract import Contract

StatePartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Recorded:
    """Where and when the latest state record of something was written."""

    place: Place
    written_at: datetime


@dataclass(frozen=True, slots=True)
class Fence:
    """A fence on a provider partition: its offset, and the state positions it names."""

    offset: int
    positions: Mapping[StatePartition, int]


class _FencedPartition:
    """A provider partition's fences, as running maxima: after each fence, how far each state
    partition was certainly in force for the records that follow it (never decreasing, so the
    first fence past a state record is found by bisection)."""

    def __init__(self, fences: Iterable[Fence]) -> None:
        self.offsets: list[int] = []
        self.reached: list[dict[StatePartition, int]] = []
        running: dict[StatePartition, int] = {}
        for fence in sorted(fences, key=lambda f: f.offset):
            for partition, position in fence.positions.items():
                running[partition] = max(running.get(partition, 0), position)
            self.offsets.append(fence.offset)
            self.reached.append(dict(running))

    def first_covering(self, record: Place) -> int | None:
        """The offset of the first fence naming a position past ``record`` (every record
        after it was routed under it), None when no fence does."""
        partition = (record.topic, record.partition)
        found = bisect.bisect_left(self.reached, record.offset + 1,
                                   key=lambda reached: reached.get(partition, 0))
        return self.offsets[found] if found < len(self.offsets) else None


class StateConcerns:
    """The certain concerns of events, from the state topics read now and the fences."""

    def __init__(self, contracts: Mapping[str, tuple[Contract, Recorded]],
                 enrolments: Mapping[tuple[str, str], tuple[bool, Recorded]],
                 fences: Mapping[StatePartition, Iterable[Fence]], horizon: datetime) -> None:
        self._enrolments = enrolments
        self._horizon = horizon
        self._fences = {partition: _FencedPartition(found) for partition, found in fences.items()}
        self._covering: dict[tuple[StatePartition, Place], int | None] = {}
        self._audited: dict[tuple[str, frozenset[date]], bool] = {}
        self._naming: dict[str, list[tuple[Contract, Recorded]]] = {}
        for contract, recorded in contracts.values():
            for dataset in contract.datasets:
                self._naming.setdefault(dataset, []).append((contract, recorded))

    def certain(self, event: Event, days: frozenset[date]) -> frozenset[str]:
        """The contracts routing certainly owed ``event`` a decision, routed on any of
        ``days`` (the days its decisions name, or those it may be routed on)."""
        owed = set()
        for contract, recorded in self._naming.get(event.dataset, ()):
            if not (self._still_audited(contract, days) and self._in_force(recorded, event)):
                continue
            if contract.population == "all":
                owed.add(contract.id)
                continue
            enrolment = self._enrolments.get((contract.id, event.subject or ""))
            if enrolment is not None and enrolment[0] and self._in_force(enrolment[1], event):
                owed.add(contract.id)
        return frozenset(owed)

    def _still_audited(self, contract: Contract, days: frozenset[date]) -> bool:
        """Whether ``contract`` is in the routing index on every one of ``days`` (remembered:
        events share their days)."""
        known = self._audited.get((contract.id, days))
        if known is None:
            known = self._audited[contract.id, days] = all(
                still_audited(contract, day) for day in days)
        return known

    def _in_force(self, recorded: Recorded, event: Event) -> bool:
        """Whether the state ``recorded`` was certainly in force when ``event`` was routed:
        behind the first fence past it on the event's partition (found once per partition and
        record)."""
        if recorded.written_at < self._horizon:
            return True
        partition = (event.place.topic, event.place.partition)
        if (partition, recorded.place) not in self._covering:
            fenced = self._fences.get(partition)
            self._covering[partition, recorded.place] = (
                None if fenced is None else fenced.first_covering(recorded.place))
        first = self._covering[partition, recorded.place]
        return first is not None and event.place.offset > first
