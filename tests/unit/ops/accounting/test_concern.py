"""Which contracts certainly owed an event a decision: the routing rule, trusted only behind a
fence naming the state it was decided under (or for state older than the horizon)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from schemas.catalog import Catalog
from streams.ops.accounting.books import Event, Place
from streams.ops.accounting.concern import Fence, Recorded, StateConcerns
from streams.state.contract import Contract

CATALOG = Catalog.load()
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
HORIZON = NOW - timedelta(hours=2)
TOPIC = "provider.cnaf.quotient_familial"
SUBJECT = "sr1_" + "ab" * 32
TODAY = frozenset({NOW.date()})


def contract(contract_id: str, population: str = "all", **terms: Any) -> Contract:
    return Contract.checked({
        "id": contract_id, "subscriber": f"ville-{contract_id}",
        "subscriber_siret": "21690123100011", "purpose": "Tarification sociale",
        "legal_basis": "Essai", "datasets": {"quotient_familial": ["quotient_familial"]},
        "consent": "not_required", "population": population, "retention": "P90D",
        "valid_from": "2026-01-01", **terms}, CATALOG)


def recorded(topic: str, offset: int, at: datetime = NOW - timedelta(minutes=10)) -> Recorded:
    return Recorded(Place(topic, 0, offset), at)


def event(offset: int, dataset: str = "quotient_familial") -> Event:
    return Event(Place(TOPIC, 0, offset), "cnaf", dataset, f"e{offset}", SUBJECT,
                 NOW - timedelta(minutes=5), True)


FENCE = {(TOPIC, 0): [Fence(10, {("bus.contracts", 0): 6, ("bus.population", 0): 4})]}
"""At offset 10 of the provider partition, a fence past contract record 5 and population
record 3."""


def test_a_contract_is_owed_a_decision_only_by_events_behind_a_fence_past_its_record() -> None:
    concerns = StateConcerns({"lyon": (contract("lyon"), recorded("bus.contracts", 5))}, {},
                             FENCE, HORIZON)
    assert concerns.certain(event(11), TODAY) == {"lyon"}
    assert concerns.certain(event(9), TODAY) == frozenset(), "routed maybe before it existed"


def test_a_record_the_fence_does_not_reach_binds_nothing_yet() -> None:
    concerns = StateConcerns({"lyon": (contract("lyon"), recorded("bus.contracts", 6))}, {},
                             FENCE, HORIZON)
    assert concerns.certain(event(11), TODAY) == frozenset()


def test_state_older_than_the_horizon_binds_without_a_fence() -> None:
    old = recorded("bus.contracts", 99, at=HORIZON - timedelta(minutes=1))
    concerns = StateConcerns({"lyon": (contract("lyon"), old)}, {}, {}, HORIZON)
    assert concerns.certain(event(3), TODAY) == {"lyon"}


def test_an_enrolled_contract_is_owed_a_decision_about_persons_it_follows_only() -> None:
    contracts = {"cantine": (contract("cantine", "enrolled"), recorded("bus.contracts", 5))}
    enrolled = {("cantine", SUBJECT): (True, recorded("bus.population", 3))}
    released = {("cantine", SUBJECT): (False, recorded("bus.population", 3))}
    late = {("cantine", SUBJECT): (True, recorded("bus.population", 4))}
    assert StateConcerns(contracts, enrolled, FENCE, HORIZON).certain(event(11), TODAY) == {
        "cantine"}
    assert StateConcerns(contracts, released, FENCE, HORIZON).certain(event(11), TODAY) == set()
    assert StateConcerns(contracts, late, FENCE, HORIZON).certain(event(11), TODAY) == set()
    assert StateConcerns(contracts, {}, FENCE, HORIZON).certain(event(11), TODAY) == set()


def test_a_contract_ended_past_its_audit_grace_on_the_routing_day_is_owed_nothing() -> None:
    ended = contract("lyon", valid_until="2026-10-01")
    concerns = StateConcerns({"lyon": (ended, recorded("bus.contracts", 5))}, {}, FENCE,
                             HORIZON)
    assert concerns.certain(event(11), frozenset({date(2026, 10, 20)})) == {"lyon"}
    assert concerns.certain(event(11), frozenset({date(2026, 10, 20), NOW.date()})) == set()


def test_a_contract_not_naming_the_dataset_is_owed_nothing() -> None:
    concerns = StateConcerns({"lyon": (contract("lyon"), recorded("bus.contracts", 5))}, {},
                             FENCE, HORIZON)
    assert concerns.certain(event(11, dataset="statut_etudiant_boursier"), TODAY) == set()
