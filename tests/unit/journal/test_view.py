"""The journal's view: entries by person in time order, read again without duplicates, the
person's file folded as routing folds it, and the positions kept for a restart."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.catalog import Catalog
from streams.journal.entries import (
    MalformedSubject,
    Source,
    from_audit,
    from_consent,
    from_population,
    from_release,
)
from streams.journal.follower import JournalFollower
from streams.journal.queries import journal, receivers, upcoming
from streams.journal.view import JournalView
from streams.kafka.topics import AUDIT, CONSENTS, POPULATION
from streams.state.contract import Contract
from streams.state.directory import Standing

CATALOG = Catalog.load()
ALICE = "sr1_" + "a" * 64
BOB = "sr1_" + "b" * 64
AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
DAY = date(2026, 3, 2)
BOURSIER = "statut_etudiant_boursier"


def _contract(contract_id: str, consent: str, population: str = "all",
              revoked: bool = False) -> Contract:
    return Contract.checked({
        "id": contract_id, "subscriber": "ville-de-lyon", "subscriber_siret": "21690123100011",
        "purpose": f"Tarification {contract_id}", "legal_basis": "CRPA art. L114-8",
        "datasets": {BOURSIER: ["echelon"]}, "consent": consent, "population": population,
        "retention": "P90D", "valid_from": date(2026, 1, 1), "revoked": revoked,
        "revoked_at": AT if revoked else None}, CATALOG)


def _audit(subject: str, contract_id: str, decision: str, reason: str | None = None,
           minutes: int = 0) -> dict[str, Any]:
    return {"event_id": "e", "delivery_id": "d" if decision == "delivered" else None,
            "contract_id": contract_id, "subscriber": "ville-de-lyon", "provider": "cnous",
            "dataset": BOURSIER, "subject_ref": subject, "decision": decision,
            "reason": reason, "decided_at": AT + timedelta(minutes=minutes),
            "fields_delivered": ["echelon"] if decision == "delivered" else []}


def _consent(subject: str, contract_id: str, status: str, minutes: int = 0) -> dict[str, Any]:
    return {"contract_id": contract_id, "subject_ref": subject, "status": status,
            "recorded_at": AT + timedelta(minutes=minutes), "collected_by": "21690123100011",
            "channel": "counter", "evidence_ref": None}


def test_entries_come_back_by_person_in_time_order_and_once(tmp_path: Path) -> None:
    view = JournalView(tmp_path)
    for _ in range(2):  # the same records read twice, as after a crash before the positions
        batch = view.batch()
        batch.add(_made(_audit(ALICE, "c-in", "delivered", minutes=5)), Source(AUDIT, 0, 7))
        batch.add(_made(_audit(ALICE, "c-in", "withheld", "no_consent", minutes=1)),
                  Source(AUDIT, 1, 3))
        batch.add(_made(_audit(BOB, "c-in", "delivered")), Source(AUDIT, 0, 8))
        batch.commit({(AUDIT, 0): 9, (AUDIT, 1): 4})
    entries = view.entries(ALICE)
    assert [(e.kind, e.reason) for e in entries] == [("withheld", "no_consent"),
                                                     ("delivery", None)]
    assert [e.kind for e in view.entries(BOB)] == ["delivery"]
    assert view.positions() == {(AUDIT, 0): 9, (AUDIT, 1): 4}
    view.close()
    assert JournalView(tmp_path).positions() == {(AUDIT, 0): 9, (AUDIT, 1): 4}


def _made(datum: dict[str, Any]) -> Any:
    made = from_audit(datum)
    assert made is not None
    return made


def test_records_about_no_person_or_of_an_unknown_decision_make_no_entry() -> None:
    deletion = {**_audit("", "c-in", "deleted"), "provider": "", "dataset": ""}
    assert from_audit(deletion) is None
    # A decision a newer schema added reads, under this version's, as withheld without reason.
    assert from_audit(_audit(ALICE, "c-in", "withheld", None)) is None


def test_the_file_and_the_journal_follow_consents_and_enrolments(tmp_path: Path) -> None:
    view = JournalView(tmp_path)
    contracts = {c.id: c for c in (_contract("c-in", "opt_in"), _contract("c-out", "opt_out"),
                                   _contract("c-enrolled", "not_required", "enrolled"),
                                   _contract("c-gone", "not_required", revoked=True))}
    batch = view.batch()
    for contract in contracts.values():
        batch.contract(contract.id, contract)
    batch.add(from_consent(_consent(ALICE, "c-in", "granted")), Source(CONSENTS, 0, 0))
    batch.add(from_consent(_consent(ALICE, "c-in", "withdrawn", 2)), Source(CONSENTS, 0, 1))
    batch.add(from_consent(_consent(ALICE, "c-out", "withdrawn", 3)), Source(CONSENTS, 0, 2))
    batch.add(from_population({"contract_id": "c-enrolled", "subject_ref": ALICE,
                               "enrolled": True, "recorded_at": AT}), Source(POPULATION, 0, 0))
    batch.add(_made(_audit(ALICE, "c-out", "delivered", minutes=1)), Source(AUDIT, 0, 0))
    batch.commit({})
    assert view.file_of(ALICE) == {"c-in": Standing(False, "withdrawn"),
                                   "c-out": Standing(False, "withdrawn"),
                                   "c-enrolled": Standing(True)}
    found = journal(view, ALICE)
    assert [(line.contract_id, line.status) for line in found.consents] == [
        ("c-in", "granted"), ("c-in", "withdrawn"), ("c-out", "withdrawn")]
    assert [line.kept_until for line in found.deliveries] == [
        AT + timedelta(minutes=1, days=90)]
    assert found.deliveries[0].purpose == "Tarification c-out"
    assert sorted((r.contract_id, r.would_receive, r.reason)
                  for r in upcoming(view, ALICE, DAY)) == [
        ("c-enrolled", True, None), ("c-gone", False, "contract_inactive"),
        ("c-in", False, "no_consent"), ("c-out", False, "objection")]
    # Another person, with nothing recorded: the enrolled-population contract is not theirs.
    assert sorted((r.contract_id, r.would_receive, r.reason)
                  for r in receivers(contracts, view.file_of(BOB), DAY)) == [
        ("c-gone", False, "contract_inactive"), ("c-in", False, "no_consent"),
        ("c-out", True, None)]
    view.close()


def test_the_view_folder_is_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    JournalView(folder).close()
    assert folder.stat().st_mode & 0o777 == 0o700
    store = folder / "view"
    store.chmod(0o755)  # as a view made before would be
    JournalView(folder).close()
    assert store.stat().st_mode & 0o777 == 0o700
    assert any(store.iterdir())  # RocksDB's files are in it, behind the owner-only folder


def test_audit_entries_past_the_retention_are_pruned(tmp_path: Path) -> None:
    view = JournalView(tmp_path)
    batch = view.batch()
    batch.add(_made(_audit(ALICE, "c-in", "delivered")), Source(AUDIT, 0, 0))
    batch.add(_made(_audit(ALICE, "c-in", "delivered", minutes=10)), Source(AUDIT, 0, 1))
    batch.add(from_consent(_consent(ALICE, "c-in", "granted")), Source(CONSENTS, 0, 0),
              b"c-in/" + ALICE.encode() + b"/1")
    batch.commit({})
    assert view.prune(AT + timedelta(minutes=5), AUDIT) == 1
    assert [(e.kind, e.at) for e in view.entries(ALICE)] == [
        ("consent", AT), ("delivery", AT + timedelta(minutes=10))]  # a standing choice stays
    view.close()


def _population(subject: str, contract_id: str, enrolled: bool) -> dict[str, Any]:
    return {"contract_id": contract_id, "subject_ref": subject, "enrolled": enrolled,
            "recorded_at": AT}


def test_a_tombstoned_state_key_takes_its_entries_with_it(tmp_path: Path) -> None:
    view = JournalView(tmp_path)
    granted, withdrawn = (f"c-in/{ALICE}/{n}".encode() for n in (1, 2))
    enrolment = f"c-enrolled/{ALICE}".encode()
    batch = view.batch()
    batch.add(from_consent(_consent(ALICE, "c-in", "granted")), Source(CONSENTS, 0, 0),
              granted)
    batch.add(from_consent(_consent(ALICE, "c-in", "withdrawn", 1)), Source(CONSENTS, 0, 1),
              withdrawn)
    batch.add(from_population(_population(ALICE, "c-enrolled", True)),
              Source(POPULATION, 0, 0), enrolment)
    batch.add(from_population(_population(BOB, "c-enrolled", True)),
              Source(POPULATION, 0, 1), f"c-enrolled/{BOB}".encode())
    batch.commit({})
    batch = view.batch()
    batch.forget(CONSENTS, granted)  # an older decision, erased by expire-history
    batch.add(from_population(_population(ALICE, "c-enrolled", False)),
              Source(POPULATION, 0, 2), enrolment)
    batch.forget(POPULATION, enrolment)  # read in the same batch as its last record
    batch.commit({})
    assert [(e.kind, e.status) for e in view.entries(ALICE)] == [("consent", "withdrawn")]
    assert [e.kind for e in view.entries(BOB)] == ["enrolment"]
    view.close()


def test_a_population_tombstone_adds_a_release_only_to_an_enrolled_person(
        tmp_path: Path) -> None:
    view = JournalView(tmp_path)
    released, enrolled = f"c-a/{ALICE}".encode(), f"c-b/{ALICE}".encode()
    batch = view.batch()
    batch.add(from_population(_population(ALICE, "c-a", True)), Source(POPULATION, 0, 0),
              released)
    batch.add(from_population(_population(ALICE, "c-a", False)), Source(POPULATION, 0, 1),
              released)
    batch.add(from_population(_population(ALICE, "c-b", True)), Source(POPULATION, 0, 2),
              enrolled)
    batch.commit({})
    later = int((AT + timedelta(days=400)).timestamp() * 1000)
    batch = view.batch()
    JournalFollower._tombstone(batch, Source(POPULATION, 0, 3), released, later)
    JournalFollower._tombstone(batch, Source(POPULATION, 0, 4), enrolled, later)
    batch.commit({})
    assert [(e.contract_id, e.enrolled, e.at) for e in view.entries(ALICE)] == [
        ("c-b", False, AT + timedelta(days=400))]  # no second, wrongly dated release of c-a
    assert view.file_of(ALICE) == {}
    view.close()


FORGED = [ALICE + "\x00", ALICE + "0", ALICE.upper(), "sr1_" + "a" * 63, "12345678", ALICE[4:],
          12345]


@pytest.mark.parametrize("forged", FORGED)
def test_a_record_whose_subject_is_malformed_makes_no_entry(forged: Any) -> None:
    """A forged ``sr1_<victim>`` followed by more would fall into the victim's prefix scan."""
    with pytest.raises(MalformedSubject):
        from_audit(_audit(forged, "c-in", "delivered"))
    with pytest.raises(MalformedSubject):
        from_consent(_consent(forged, "c-in", "granted"))
    with pytest.raises(MalformedSubject):
        from_population(_population(forged, "c-in", True))
    if isinstance(forged, str):
        with pytest.raises(MalformedSubject):
            from_release(f"c-in/{forged}", 0)


def test_a_company_s_siren_and_a_reference_make_entries() -> None:
    assert _made(_audit("356000000", "c-in", "delivered")).subject == "356000000"
    assert from_consent(_consent(ALICE, "c-in", "granted")).subject == ALICE
