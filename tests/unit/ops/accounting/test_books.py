"""Reconciling a window's books: every kind of gap found at its place, nothing else reported.

The books are plain records, as the reader builds them from the topics; which contracts an event
binds is a fixed answer here (the rule itself: ``test_concern.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from streams.ops.accounting.books import (
    Books,
    Delivery,
    Event,
    Gap,
    Outcome,
    Place,
    Window,
    reconcile,
)

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(hours=1), NOW - timedelta(minutes=1))
TOPIC = "provider.cnaf.quotient_familial"
OLD = NOW - timedelta(minutes=30)


@dataclass(frozen=True)
class Bound:
    """Every event binds the same contracts."""

    contracts: frozenset[str]

    def certain(self, event: Event, days: frozenset[date]) -> frozenset[str]:
        return self.contracts


BOTH = Bound(frozenset({"lyon", "bron"}))


def event(offset: int, *, at: datetime = OLD, acknowledged: bool = True,
          event_id: str | None = None) -> Event:
    return Event(Place(TOPIC, 0, offset), "cnaf", "quotient_familial",
                 event_id if event_id is not None else f"e{offset}", "sr1_" + "ab" * 32, at,
                 acknowledged)


_audit_offsets = iter(range(10_000))


def outcome(event_id: str, contract: str, reason: str | None = None, *,
            delivery_id: str | None = "", at: datetime = OLD) -> Outcome:
    """A decision on ``event_id``; a delivered one names ``<contract>-<event>`` as the
    delivery's id unless told otherwise."""
    if delivery_id == "":
        delivery_id = None if reason else f"{contract}-{event_id}"
    return Outcome(Place("bus.audit", 0, next(_audit_offsets)),
                   ("cnaf", "quotient_familial", event_id), contract, reason, delivery_id,
                   at, at)


def delivery(contract: str, delivery_id: str, offset: int, at: datetime = OLD) -> Delivery:
    return Delivery(Place(f"deliver.{contract}.{contract}", 0, offset), contract, delivery_id,
                    at)


def clean_books(events: Iterable[Event]) -> Books:
    """Every event delivered to lyon and withheld from bron, as routing writes them."""
    events = list(events)
    outcomes = [o for e in events for o in (outcome(str(e.event_id), "lyon"),
                                            outcome(str(e.event_id), "bron", "no_consent"))]
    deliveries = [delivery("lyon", f"lyon-{e.event_id}", i) for i, e in enumerate(events)]
    return Books(events, outcomes, deliveries)


def test_a_clean_window_has_no_gap_and_counts_what_it_judged() -> None:
    found = reconcile(clean_books(event(n) for n in range(3)), WINDOW, BOTH, NOW.date())
    assert found.gaps == []
    assert (found.events, found.deliveries) == (3, 3)
    assert dict(found.outcomes) == {"delivered": 3, "no_consent": 3}


def test_an_event_without_the_outcome_of_a_contract_concerning_it_is_a_gap() -> None:
    books = clean_books([event(7)])
    books = replace(books, outcomes=[o for o in books.outcomes if o.contract_id != "bron"])
    assert reconcile(books, WINDOW, BOTH, NOW.date()).gaps == [
        Gap(TOPIC, 0, 7, "bron", "outcome")]


def test_a_dead_lettered_event_owes_no_outcome_and_a_record_that_must_be_one_is_a_gap() -> None:
    dead, unreadable = event(1), event(2, event_id=None)
    unreadable = replace(unreadable, event_id=None)
    books = Books([dead, unreadable], [], [], frozenset({dead.place}))
    found = reconcile(books, WINDOW, BOTH, NOW.date())
    assert found.dead_lettered == 1
    assert found.gaps == [Gap(TOPIC, 0, 2, None, "dead letter")]


def test_a_delivery_without_its_audit_record_is_a_gap_at_the_delivery() -> None:
    books = clean_books([event(1)])
    books = replace(books, deliveries=[*books.deliveries, delivery("lyon", "forged", 9)])
    assert reconcile(books, WINDOW, BOTH, NOW.date()).gaps == [
        Gap("deliver.lyon.lyon", 0, 9, "lyon", "audit record")]


def test_a_decision_to_deliver_without_its_delivery_is_a_gap_at_the_audit_record() -> None:
    books = clean_books([event(1), event(2)])
    books = replace(books, deliveries=books.deliveries[:1])
    (gap,) = reconcile(books, WINDOW, BOTH, NOW.date()).gaps
    lost = next(o for o in books.outcomes if o.event[2] == "e2" and o.contract_id == "lyon")
    assert gap == Gap("bus.audit", 0, lost.place.offset, "lyon", "delivery")


def test_a_delivery_whose_event_does_not_exist_is_a_gap_at_the_delivery() -> None:
    books = clean_books([event(1)])
    ghost = outcome("ghost", "lyon")
    books = replace(books, outcomes=[*books.outcomes, ghost],
                    deliveries=[*books.deliveries, delivery("lyon", "lyon-ghost", 5)])
    assert reconcile(books, WINDOW, BOTH, NOW.date()).gaps == [
        Gap("deliver.lyon.lyon", 0, 5, "lyon", "event")]


def test_a_withheld_decision_about_no_event_is_a_gap_at_the_audit_record() -> None:
    books = clean_books([event(1)])
    ghost = outcome("ghost", "bron", "objection")
    found = reconcile(replace(books, outcomes=[*books.outcomes, ghost]), WINDOW, BOTH,
                      NOW.date())
    assert found.gaps == [Gap("bus.audit", 0, ghost.place.offset, "bron", "event")]


def test_duplicates_with_the_same_outcome_are_counted_and_conflicting_ones_are_a_gap() -> None:
    books = clean_books([event(1), event(2)])
    replayed = [outcome("e1", "lyon"), outcome("e1", "bron", "no_consent")]
    again = delivery("lyon", "lyon-e1", 8)
    found = reconcile(replace(books, outcomes=[*books.outcomes, *replayed],
                              deliveries=[*books.deliveries, again]), WINDOW, BOTH, NOW.date())
    assert found.gaps == []
    assert (found.duplicate_outcomes, found.duplicate_deliveries) == (2, 1)

    changed = outcome("e2", "bron")
    found = reconcile(replace(books, outcomes=[*books.outcomes, changed],
                              deliveries=[*books.deliveries, delivery("bron", "bron-e2", 4)]),
                      WINDOW, BOTH, NOW.date())
    assert found.gaps == [Gap(TOPIC, 0, 2, "bron",
                              "one outcome (found delivered and withheld (no_consent))")]


def test_young_records_not_acknowledged_are_in_flight_and_acknowledged_ones_are_judged() -> None:
    young = NOW - timedelta(seconds=5)
    waiting = event(1, at=young, acknowledged=False)
    routed = event(2, at=young, acknowledged=True)
    books = Books([waiting, routed], [outcome("e2", "lyon", at=young)],
                  [delivery("lyon", "lyon-e2", 0, at=young)])
    found = reconcile(books, WINDOW, BOTH, NOW.date())
    assert found.in_flight == 1
    assert found.gaps == [Gap(TOPIC, 0, 2, "bron", "outcome")]
    assert found.deliveries == 1


def test_records_before_the_window_are_not_judged_but_found() -> None:
    before = event(1, at=WINDOW.start - timedelta(minutes=5))
    books = Books([before], [outcome("e1", "lyon")], [delivery("lyon", "lyon-e1", 0)])
    found = reconcile(books, WINDOW, BOTH, NOW.date())
    assert (found.events, found.gaps) == (0, [])
    assert found.deliveries == 1


def test_an_event_id_published_twice_is_one_event_whose_outcomes_are_duplicates() -> None:
    books = clean_books([event(1)])
    again = event(2, event_id="e1")
    found = reconcile(replace(books, events=[*books.events, again],
                              outcomes=[*books.outcomes, *clean_books([again]).outcomes]),
                      WINDOW, BOTH, NOW.date())
    assert found.gaps == []
    assert (found.events, found.republished, found.duplicate_outcomes) == (1, 1, 2)


def test_deliveries_audited_before_their_id_was_are_counted_not_joined() -> None:
    books = Books([event(1)], [outcome("e1", "lyon", delivery_id=None),
                               outcome("e1", "bron", "no_consent")], [])
    found = reconcile(books, WINDOW, BOTH, NOW.date())
    assert (found.gaps, found.unjoined) == ([], 1)


def test_a_dead_lettered_event_replayed_since_is_accounted_by_its_replay() -> None:
    """``dlq replay``: the event's outcomes are those of its replay, owed for every contract
    concerning it; a replay run twice gives duplicates with the same outcome, not a gap."""
    dead = event(3)
    replayed = [replace(o, replay=True) for o in clean_books([dead]).outcomes]
    deliveries = [delivery("lyon", "lyon-e3", 0)]
    books = Books([dead], replayed, deliveries, frozenset({dead.place}))
    found = reconcile(books, WINDOW, BOTH, NOW.date())
    assert (found.gaps, found.dead_lettered, found.events) == ([], 0, 1)
    assert dict(found.outcomes) == {"delivered": 1, "no_consent": 1}

    half = replace(books, outcomes=[o for o in replayed if o.contract_id == "lyon"])
    assert reconcile(half, WINDOW, BOTH, NOW.date()).gaps == [Gap(TOPIC, 0, 3, "bron", "outcome")]

    twice = replace(books, outcomes=[*replayed, *(replace(o, place=Place("bus.audit", 0, 900 + i))
                                                  for i, o in enumerate(replayed))],
                    deliveries=[*deliveries, delivery("lyon", "lyon-e3", 1)])
    found = reconcile(twice, WINDOW, BOTH, NOW.date())
    assert found.gaps == []
    assert (found.duplicate_outcomes, found.duplicate_deliveries) == (2, 1)
