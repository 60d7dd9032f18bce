"""Routing reads the subject's file: a contract that does not follow a person decides nothing
about them, and an event off its subject's partition is refused.

With thousands of ``population: enrolled`` contracts on one dataset, an event whose person none
of them follows gives no audit record and no delivery; one whose person three of them follow
gives exactly those three decisions, as three ``population: all`` contracts would. An event
read from another partition than its subject's would be decided against another partition's
state: it becomes a dead letter naming the key, never the subject.
"""

from __future__ import annotations

from collections.abc import Sequence

from schemas.serde import AvroSerde
from streams.kafka.topics import AUDIT, DLQ
from streams.privacy.pseudonyms import Pseudonymiser
from streams.routing.records import Outgoing, SourceRecord
from streams.routing.router import Router
from streams.state.bus_state import BusState
from streams.state.contract import Contract
from streams.state.directory import Change, MemoryDirectory, SubjectFile
from tests.unit.memory_registry import MemoryRegistry
from tests.unit.routing.test_rules import CATALOG, NOW, SECRET, SIRET, _record

FOLLOWED = "sr1_" + "ab" * 32
STRANGER = "sr1_" + "cd" * 32
COMMUNES = 3000


def _contract(number: int, population: str, consent: str = "not_required") -> Contract:
    return Contract.checked({
        "id": f"commune-{number:05d}", "subscriber": f"commune-{number:05d}",
        "subscriber_siret": SIRET, "purpose": "Tarification de la restauration scolaire",
        "legal_basis": "Essai", "datasets": {"quotient_familial": ["quotient_familial"]},
        "consent": consent, "population": population, "retention": "P90D",
        "valid_from": "2026-01-01"}, CATALOG)


def _route(state: BusState, subjects: Sequence[str]) -> tuple[Router, list[Outgoing],
                                                             list[SourceRecord]]:
    serde = AvroSerde(MemoryRegistry())  # type: ignore[arg-type]
    router = Router(CATALOG, serde, Pseudonymiser(SECRET))
    records = [_record(serde, "quotient_familial", subject, seed, offset)[0]
               for offset, (seed, subject) in enumerate(zip((5, 6, 7), subjects, strict=False))]
    return router, router.route(records, state, now=NOW), records


def _communes(population: str) -> BusState:
    contracts = (_contract(n, population) for n in range(COMMUNES))
    return BusState(contracts={c.id: c for c in contracts}, directory=MemoryDirectory())


def test_contracts_that_follow_nobody_decide_nothing_and_audit_nothing() -> None:
    state = _communes("enrolled")
    _, out, _ = _route(state, [STRANGER, STRANGER])
    assert out == [], "no audit record, no delivery, for contracts not following the person"


def test_an_event_is_decided_by_the_contracts_that_follow_its_person_only() -> None:
    state = _communes("enrolled")
    assert isinstance(state.directory, MemoryDirectory)
    followers = ["commune-00007", "commune-01234", "commune-02999"]
    for contract_id in followers:
        state.directory.apply(Change(contract_id, FOLLOWED, enrolled=True))
    state.directory.apply(Change("commune-00008", FOLLOWED, consent="granted"))  # not enrolled
    state.directory.apply(Change("commune-00009", FOLLOWED, enrolled=False))
    router, out, _ = _route(state, [FOLLOWED, STRANGER])
    audits = [router.serde.decode(o.value)[1] for o in out if o.topic == AUDIT]
    assert sorted(a["contract_id"] for a in audits) == followers
    assert {a["reason"] for a in audits} == {None}
    assert sorted(o.topic for o in out if o.topic != AUDIT) == sorted(
        state.contracts[c].delivery_topic for c in followers)


def test_a_followed_person_s_refusals_stay_audited() -> None:
    state = _communes("enrolled")
    opt_in = _contract(1, "enrolled", consent="opt_in")
    state.contracts[opt_in.id] = opt_in
    assert isinstance(state.directory, MemoryDirectory)
    state.directory.apply(Change(opt_in.id, FOLLOWED, enrolled=True))
    router, out, _ = _route(state, [FOLLOWED])
    (audit,) = [router.serde.decode(o.value)[1] for o in out if o.topic == AUDIT]
    assert (audit["contract_id"], audit["reason"]) == (opt_in.id, "no_consent")
    assert [o for o in out if o.topic != AUDIT] == []


def test_population_all_contracts_decide_every_event() -> None:
    state = BusState(contracts={c.id: c for c in (_contract(n, "all") for n in range(3))})
    _router, out, _ = _route(state, [STRANGER])
    assert len([o for o in out if o.topic == AUDIT]) == 3
    assert len([o for o in out if o.topic not in (AUDIT, DLQ)]) == 3


class _Partitioned(MemoryDirectory):
    """A directory that places every subject on partition 2."""

    def partition_of(self, subject: str) -> int | None:
        return 2

    def file_of(self, subject: str, partition: int = 0) -> SubjectFile:
        assert partition == 2, "read from the event's own partition"
        return super().file_of(subject, partition)


def test_an_event_off_its_subject_s_partition_is_a_dead_letter_naming_the_key() -> None:
    state = BusState(contracts={c.id: c for c in (_contract(n, "all") for n in range(3))},
                     directory=_Partitioned())
    router, out, records = _route(state, [STRANGER])  # read from partition 0
    (letter,) = out
    assert letter.topic == DLQ
    dead = router.serde.decode(letter.value)[1]
    assert dead["field"] == "key"
    assert "subject's partition" in dead["error"]
    assert STRANGER not in repr(dead)
    moved = [SourceRecord(r.topic, 2, r.offset, r.timestamp_ms, r.key, r.value, r.headers)
             for r in records]
    assert len([o for o in router.route(moved, state, now=NOW) if o.topic == AUDIT]) == 3
