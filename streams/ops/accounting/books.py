"""The books of a window and their reconciliation: pure, on lists of records already read.

Four kinds of record meet here, all pseudonymous: the events of the provider topics (subject
references), the decisions of ``bus.audit``, the deliveries (per-subscriber pseudonyms and ids)
and the dead letters. They join on what each carries without any secret: an audit record names
its event's provider, dataset and id, and, for a delivery, the delivery's own id, which is the
delivery's ``ce_id``. Which contracts an event must have an outcome from is asked of a
:class:`Concerns` (:mod:`streams.ops.accounting.concern` answers from the state topics and the
fences).

An event is accounted once the routers acknowledged it, or once it is old enough that it should
have been (:attr:`Window.settled`); a decision or delivery likewise, by its event's
acknowledgement or its own age. What is younger is in flight, counted and not judged: a live bus
always has some.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

EventKey = tuple[str, str, str]
"""An event as an audit record names it: provider, dataset, event id."""


@dataclass(frozen=True, slots=True, order=True)
class Place:
    """Where a record is: topic, partition, offset."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Event:
    """A record of a provider topic (fences left out), as its headers and key tell it."""

    place: Place
    provider: str
    dataset: str
    event_id: str | None
    """Its ``ce_id``; None when it has no readable one, so that routing must dead-letter it."""
    subject: str | None
    published_at: datetime
    acknowledged: bool
    """Behind the routers' committed offset: everything it gave is written."""

    @property
    def key(self) -> EventKey | None:
        return None if self.event_id is None else (self.provider, self.dataset, self.event_id)


@dataclass(frozen=True, slots=True)
class Outcome:
    """An audit record: one contract's decision on one event."""

    place: Place
    event: EventKey
    contract_id: str
    reason: str | None
    """None: delivered; otherwise why it was withheld."""
    delivery_id: str | None
    """The delivery's own id (audit schema version 3 on); None when withheld, or written
    before audit records named it."""
    decided_at: datetime
    written_at: datetime
    replay: bool = False
    """Taken on a replay (``circulation dlq replay``): the event had been dead-lettered."""

    @property
    def verdict(self) -> str:
        return "delivered" if self.reason is None else f"withheld ({self.reason})"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery record (erasure notices left out): its contract and its own id."""

    place: Place
    contract_id: str
    delivery_id: str
    written_at: datetime


@dataclass(frozen=True, slots=True, order=True)
class Gap:
    """A record that is there, and what is missing for it (never a value it holds)."""

    topic: str
    partition: int
    offset: int
    contract: str | None
    missing: str

    def as_json(self) -> dict[str, str | int | None]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset,
                "contract": self.contract, "missing": self.missing}


@dataclass(frozen=True)
class Window:
    """What is judged: records from ``start``; those after ``settled`` only when the routers
    already acknowledged them (events), never otherwise."""

    start: datetime
    settled: datetime

    def judges(self, at: datetime, acknowledged: bool = False) -> bool:
        return at >= self.start and (acknowledged or at <= self.settled)


class Concerns(Protocol):
    """Which contracts certainly had to decide an event (see the concern module)."""

    def certain(self, event: Event, days: frozenset[date]) -> frozenset[str]:
        """The contracts certainly bound to decide ``event`` if routed on one of ``days``."""
        ...


@dataclass(frozen=True)
class Books:
    """Everything read for a window: events from before it too (to find the event of a
    decision), decisions, deliveries, and the places of the dead letters' origins."""

    events: Sequence[Event] = field(repr=False)
    outcomes: Sequence[Outcome] = field(repr=False)
    deliveries: Sequence[Delivery] = field(repr=False)
    dead_letters: frozenset[Place] = field(default=frozenset(), repr=False)
    """(Left out of the repr: asyncio's task repr would print every record of the window.)"""


@dataclass
class Reconciliation:
    """What reconciling a window found."""

    events: int = 0
    in_flight: int = 0
    dead_lettered: int = 0
    republished: int = 0
    """Events whose id its topic already held: accounted as the first, their outcomes as its."""
    outcomes: Counter[str] = field(default_factory=Counter)
    """Per verdict (``delivered``, or the reason it was withheld), one per event and contract."""
    deliveries: int = 0
    duplicate_outcomes: int = 0
    duplicate_deliveries: int = 0
    unjoined: int = 0
    """Delivered decisions written before audit records named the delivery's id."""
    gaps: list[Gap] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.gaps


def reconcile(books: Books, window: Window, concerns: Concerns,
              today: date) -> Reconciliation:
    """Every gap of ``books`` in ``window``, with the counts an operator reads beside them."""
    found = Reconciliation()
    events = _first_of_each(books.events, found, window)
    outcomes: dict[EventKey, list[Outcome]] = defaultdict(list)
    for outcome in books.outcomes:
        outcomes[outcome.event].append(outcome)
    deliveries: dict[tuple[str, str], list[Delivery]] = defaultdict(list)
    for delivery in books.deliveries:
        deliveries[delivery.contract_id, delivery.delivery_id].append(delivery)
    for event in books.events:
        if event.key is not None and events[event.key] is not event:
            continue  # republished: accounted as the first
        if window.judges(event.published_at, event.acknowledged):
            _account_event(event, outcomes, books.dead_letters, concerns, today, found)
        elif event.published_at >= window.start:
            found.in_flight += 1
    _check_decisions(books.outcomes, window, events, deliveries, found)
    _check_deliveries(books.deliveries, window, events, books.outcomes, found)
    found.gaps.sort()
    return found


def _first_of_each(events: Iterable[Event], found: Reconciliation,
                   window: Window) -> dict[EventKey, Event]:
    """Each event id's first record; a later one with the same id is counted as republished.
    ``events`` come as read: each partition in offset order."""
    first: dict[EventKey, Event] = {}
    for event in events:
        key = event.key
        if key is None:
            continue
        if key in first:
            found.republished += window.judges(event.published_at, event.acknowledged)
            continue
        first[key] = event
    return first


def _account_event(event: Event, outcomes: Mapping[EventKey, list[Outcome]],
                   dead_letters: frozenset[Place], concerns: Concerns, today: date,
                   found: Reconciliation) -> None:
    """One event: a dead letter, or one outcome per contract certainly concerned, the same
    outcome whenever it was written twice. A dead-lettered event replayed since is accounted
    by the outcomes of its replay."""
    place = event.place
    key = event.key
    replayed = key is not None and any(o.replay for o in outcomes.get(key, ()))
    if place in dead_letters and not replayed:
        found.dead_lettered += 1
        return
    if key is None or event.subject is None:
        found.gaps.append(Gap(place.topic, place.partition, place.offset, None, "dead letter"))
        return
    found.events += 1
    given = outcomes.get(key, ())
    by_contract: dict[str, list[Outcome]] = {}
    for outcome in given:
        by_contract.setdefault(outcome.contract_id, []).append(outcome)
    days = frozenset({o.decided_at.date() for o in given} or {event.published_at.date(), today})
    for contract in sorted(concerns.certain(event, days) - by_contract.keys()):
        found.gaps.append(Gap(place.topic, place.partition, place.offset, contract, "outcome"))
    for contract, same in by_contract.items():
        found.outcomes[same[0].reason or "delivered"] += 1
        if len(same) == 1:
            continue
        verdicts = sorted({o.verdict for o in same})
        if len(verdicts) > 1:
            found.gaps.append(Gap(place.topic, place.partition, place.offset, contract,
                                  f"one outcome (found {' and '.join(verdicts)})"))
        else:
            found.duplicate_outcomes += len(same) - 1


def _check_decisions(outcomes: Iterable[Outcome], window: Window,
                     events: Mapping[EventKey, Event],
                     deliveries: Mapping[tuple[str, str], list[Delivery]],
                     found: Reconciliation) -> None:
    """Every delivered decision has its delivery; every decision its event (a delivered one's
    missing event is told at its delivery, when there is one)."""
    for outcome in outcomes:
        if not window.judges(outcome.written_at, _acknowledged(events, outcome.event)):
            continue
        place = outcome.place
        delivered = outcome.reason is None
        joined = (outcome.contract_id, outcome.delivery_id or "") in deliveries
        if delivered and outcome.delivery_id is None:
            found.unjoined += 1
        elif delivered and not joined:
            found.gaps.append(Gap(place.topic, place.partition, place.offset,
                                  outcome.contract_id, "delivery"))
        if outcome.event not in events and not (delivered and joined):
            found.gaps.append(Gap(place.topic, place.partition, place.offset,
                                  outcome.contract_id, "event"))


def _acknowledged(events: Mapping[EventKey, Event], key: EventKey | None) -> bool:
    """Whether the event ``key`` names was acknowledged by the routers: then every record it
    gave was written before the books were read, and is judged however young."""
    event = None if key is None else events.get(key)
    return event is not None and event.acknowledged


def _check_deliveries(deliveries: Iterable[Delivery], window: Window,
                      events: Mapping[EventKey, Event], outcomes: Iterable[Outcome],
                      found: Reconciliation) -> None:
    """Every delivery has its audit record, and through it its event."""
    decided = {(o.contract_id, o.delivery_id): o.event for o in outcomes
               if o.reason is None and o.delivery_id is not None}
    seen: set[tuple[str, str]] = set()
    for delivery in deliveries:
        pair = (delivery.contract_id, delivery.delivery_id)
        event = decided.get(pair)
        if not window.judges(delivery.written_at, _acknowledged(events, event)):
            continue
        found.deliveries += 1
        if pair in seen:
            found.duplicate_deliveries += 1
        seen.add(pair)
        place = delivery.place
        if event is None:
            found.gaps.append(Gap(place.topic, place.partition, place.offset,
                                  delivery.contract_id, "audit record"))
        elif event not in events:
            found.gaps.append(Gap(place.topic, place.partition, place.offset,
                                  delivery.contract_id, "event"))
