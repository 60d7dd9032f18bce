"""Two subscribers of the same events hold no value the bus added that could join them (item 5).

Pairwise pseudonyms are pointless if every delivery of one event carries the provider's id and
its time to the millisecond: two administrations would join their pseudonyms on those. So each
subscriber gets its own stable id for an event (keyed by its own pseudonym key, so a replay keeps
it and the subscriber still deduplicates), and times no finer than the day.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.serde import AvroSerde
from streams.kafka.topics import AUDIT
from streams.privacy.pseudonyms import Pseudonymiser
from streams.routing.records import Outgoing
from streams.routing.router import Router
from streams.state.bus_state import BusState
from streams.state.contract import Contract
from tests.unit.memory_registry import MemoryRegistry
from tests.unit.routing.test_rules import CATALOG, NOW, SECRET, SIRET, _record

PERSON = "sr1_" + "cd" * 32
CONSTANTS = {"ce_specversion", "ce_source", "ce_type", "content-type", "ce_purpose",
             "ce_legalbasis"}
"""The catalog's constants, and the two contracts' terms, worded alike here."""
DAYS = {"ce_time", "ce_expiresat"}
MIDNIGHT = re.compile(rb"\d{4}-\d{2}-\d{2}T00:00:00Z")


def _contract(name: str, retention: str = "P90D") -> Contract:
    return Contract.checked({
        "id": f"{name}-cantine", "subscriber": name, "subscriber_siret": SIRET,
        "purpose": "Tarification sociale", "legal_basis": "Essai",
        "datasets": {"quotient_familial": ["quotient_familial", "annee", "mois"]},
        "consent": "not_required", "population": "all", "retention": retention,
        "valid_from": "2026-01-01"}, CATALOG)


def _route(*contracts: Contract, seeds: tuple[int, ...] = (1, 2, 3),
           ) -> dict[str, list[Outgoing]]:
    state = BusState()
    for contract in contracts:
        state.contracts[contract.id] = contract
    serde = AvroSerde(MemoryRegistry())  # type: ignore[arg-type]
    router = Router(CATALOG, serde, Pseudonymiser(SECRET))
    records = [_record(serde, "quotient_familial", PERSON, seed, seed)[0] for seed in seeds]
    out = router.route(records, state, now=NOW + timedelta(milliseconds=seeds[0]))
    return {c.subscriber: [o for o in out if o.topic == c.delivery_topic] for c in contracts}


def test_two_subscribers_share_no_bus_added_value_of_one_event() -> None:
    deliveries = _route(_contract("ville-de-lyon"), _contract("ville-de-bron"))
    lyon, bron = deliveries["ville-de-lyon"], deliveries["ville-de-bron"]
    assert len(lyon) == len(bron) == 3
    for one, other in zip(lyon, bron, strict=True):
        assert one.key != other.key
        shared = {name for name, _ in set(one.headers) & set(other.headers)}
        assert shared <= CONSTANTS | DAYS, shared
        for name, value in one.headers:
            if name in DAYS:
                assert MIDNIGHT.fullmatch(value), f"{name} is finer than the day"
    lyon_ids = {dict(o.headers)["ce_id"] for o in lyon}
    assert len(lyon_ids) == 3, "one subscriber tells its events apart"
    assert not lyon_ids & {dict(o.headers)["ce_id"] for o in bron}


def test_a_replayed_event_keeps_its_id_so_the_subscriber_deduplicates() -> None:
    """A batch replayed after a crash, routed again a moment later, gives the same ids."""
    first = _route(_contract("ville-de-lyon"), seeds=(1, 2))["ville-de-lyon"]
    again = _route(_contract("ville-de-lyon"), seeds=(1, 2))["ville-de-lyon"]
    assert [dict(o.headers)["ce_id"] for o in first] == [dict(o.headers)["ce_id"] for o in again]


def test_the_provider_id_and_time_never_reach_a_subscriber() -> None:
    serde = AvroSerde(MemoryRegistry())  # type: ignore[arg-type]
    published = dict(_record(serde, "quotient_familial", PERSON, 1, 1)[0].headers)["ce_time"]
    (delivery, *_) = _route(_contract("ville-de-lyon"))["ville-de-lyon"]
    headers = dict(delivery.headers)
    assert uuid.UUID(headers["ce_id"].decode()).version == 8
    assert not headers["ce_id"].startswith(b"event-")
    published_day = datetime.fromisoformat((published or b"").decode()).astimezone(UTC).date()
    assert headers["ce_time"] == f"{published_day}T00:00:00Z".encode()
    assert headers["ce_expiresat"] == b"2027-02-26T00:00:00Z"  # 28 Nov 2026 + 90 days


@settings(max_examples=50, deadline=None)
@given(names=st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,30}", fullmatch=True), min_size=2,
                      max_size=4, unique=True))
def test_no_two_subscribers_ever_get_the_same_event_id(names: list[str]) -> None:
    pseudonyms = Pseudonymiser(SECRET)
    ids = [pseudonyms.for_subscriber(name).event_id("cnaf", "evt-1") for name in names]
    assert len(set(ids)) == len(ids)
    assert not {pseudonyms.pseudonym(name, PERSON) for name in names} & set(ids)


def test_audit_records_keep_the_provider_event_id() -> None:
    """The audit trail, read by the data-protection officer, traces the provider's event."""
    contract = _contract("ville-de-lyon")
    state = BusState()
    state.contracts[contract.id] = contract
    serde = AvroSerde(MemoryRegistry())  # type: ignore[arg-type]
    record, event_id = _record(serde, "quotient_familial", PERSON, 1, 0)
    out = Router(CATALOG, serde, Pseudonymiser(SECRET)).route([record], state, now=NOW)
    (audit,) = [serde.decode(o.value)[1] for o in out if o.topic == AUDIT]
    assert audit["event_id"] == event_id
