"""``circulation journal``: a person's history and upcoming receivers, from the journal's view.

One person, routed by real workers under six contracts of one dataset: an opt-in contract the
person granted and then withdrew, an opt-out one, a ``not_required`` one that enrolled the
person, one revoked between two events, an opt-in one never granted, and an enrolled-population
one that never enrolled them (it takes no decision about the person, and is in neither view).
The journal, read by the command from a fresh view (rebuilt from the topics), must hold exactly
the decisions the audit trail holds about that person, joined to their contracts, and the
consent and enrolment history; ``--upcoming`` must say what routing would decide today. Read a
second time, the view resumes where it stopped and shows each entry once.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from streams.state.contract import Contract
from streams.state.subjects import resolve, set_consent, set_population
from tests.integration.routing_harness import (
    Bus,
    audit_start,
    event_for,
    fresh_people,
)

pytest_plugins = ("tests.integration.routing_harness",)

BOURSIER = "statut_etudiant_boursier"


async def _journal(bus: Bus, folder: Path, *args: str) -> Any:
    code, out, err = await bus.run_cli("journal", *args, "--json",
                                       env={"CIRCULATION_JOURNAL_DIR": str(folder)})
    assert code == 0, err
    return json.loads(out)


def _mine(lines: list[dict[str, Any]], contracts: dict[str, Contract]) -> list[dict[str, Any]]:
    """The lines about this test's contracts (other tests' may decide about anyone)."""
    return [line for line in lines if line["contract_id"] in contracts]


async def test_journal_and_upcoming_follow_every_decision_and_choice(
        bus: Bus, tmp_path: Path) -> None:
    granted = bus.contract("j-optin", {BOURSIER: ["echelon"]}, consent="opt_in")
    objecting = bus.contract("j-optout", {BOURSIER: ["statut"]}, consent="opt_out",
                             retention="P90D")
    enrolled = bus.contract("j-enrolled", {BOURSIER: ["echelon", "statut"]},
                            population="enrolled")
    revoked = bus.contract("j-revoked", {BOURSIER: ["echelon"]})
    never = bus.contract("j-never", {BOURSIER: ["statut"]}, consent="opt_in")
    stranger = bus.contract("j-stranger", {BOURSIER: ["statut"]}, population="enrolled")
    contracts = {c.id: c for c in (granted, objecting, enrolled, revoked, never, stranger)}
    await bus.apply(*contracts.values())
    person = fresh_people(1)[0]
    subject = resolve(bus.settings, [person.nir])
    await set_consent(bus.settings, granted, subject, "granted", "counter")
    await set_population(bus.settings, enrolled, subject, True)

    start = await audit_start(bus.settings)
    first = await bus.publish([event_for(BOURSIER, person)])
    deciding = [c for c in contracts.values() if c is not stranger]
    before = await bus.decisions(start, first, deciding)
    await set_consent(bus.settings, granted, subject, "withdrawn", "online_portal")
    code, _, err = await bus.run_cli("contracts", "revoke", revoked.id, "--yes")
    assert code == 0, err
    second = await bus.publish([event_for(BOURSIER, person)])
    after = await bus.decisions(start, second, deciding)

    view = tmp_path / "journal"
    found = await _journal(bus, view, person.nir)
    audited = {**before, **after}
    assert sorted((line["contract_id"], line["delivery_id"], line["at"])
                  for line in _mine(found["deliveries"], contracts)) == sorted(
        (contract_id, audit["delivery_id"], audit["decided_at"].isoformat())
        for (_, contract_id), audit in audited.items() if audit["decision"] == "delivered")
    deliveries = _mine(found["deliveries"], contracts)
    delivered = {(line["contract_id"], tuple(line["fields"])) for line in deliveries}
    assert delivered == {(granted.id, ("echelon",)), (objecting.id, ("statut",)),
                         (enrolled.id, ("echelon", "statut")), (revoked.id, ("echelon",))}
    assert len(deliveries) == 6  # the opt-out and enrolled contracts twice, the others once
    for line in deliveries:
        contract = contracts[line["contract_id"]]
        assert (line["purpose"], line["legal_basis"], line["subscriber"]) == (
            contract.purpose, contract.legal_basis, contract.subscriber)
        assert datetime.fromisoformat(line["kept_until"]) == datetime.fromisoformat(
            line["at"]) + timedelta(milliseconds=contract.retention_ms)
    withheld = _mine(found["withheld"], contracts)
    assert sorted((line["contract_id"], line["reason"]) for line in withheld) == sorted(
        [(never.id, "no_consent"), (never.id, "no_consent"), (granted.id, "no_consent"),
         (revoked.id, "contract_inactive")])
    assert [(line["contract_id"], line["status"], line["channel"])
            for line in _mine(found["consents"], contracts)] == [
        (granted.id, "granted", "counter"), (granted.id, "withdrawn", "online_portal")]
    assert [(line["contract_id"], line["enrolled"])
            for line in _mine(found["enrolments"], contracts)] == [(enrolled.id, True)]

    upcoming = _mine(await _journal(bus, view, person.nir, "--upcoming"), contracts)
    assert sorted((each["contract_id"], each["would_receive"], tuple(each["fields"]),
                   each["reason"]) for each in upcoming) == sorted([
        (granted.id, False, (), "no_consent"), (objecting.id, True, ("statut",), None),
        (enrolled.id, True, ("echelon", "statut"), None),
        (revoked.id, False, (), "contract_inactive"), (never.id, False, (), "no_consent")])
    assert {each["dataset"] for each in upcoming} == {BOURSIER}

    again = await _journal(bus, view, person.nir)  # resumed from the view's positions
    assert again == found


async def test_a_subject_that_is_no_identifier_is_refused_unquoted(bus: Bus,
                                                                   tmp_path: Path) -> None:
    code, out, err = await bus.run_cli("journal", "1840576451089",
                                       env={"CIRCULATION_JOURNAL_DIR": str(tmp_path)})
    assert code != 0
    assert "SUBJECT" in err
    assert "1840576451089" not in out + err
