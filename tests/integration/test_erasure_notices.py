"""Erasure notices the workers send, and the state changes they audit, on the real broker.

- **Removal**: removing an enrolled person from a contract's population sends its subscriber a
  ``population_removed`` notice under its own pseudonym of the person; removing someone the
  contract never followed sends nothing. Both removals are audited.
- **A contract's end**: revoking a contract, or applying it with a last valid day already past,
  sends one contract-wide ``contract_ended`` notice (no subject), by the workers alone, audited.
- **Exactly once**: consents, enrolments and contracts are audited once each, by the worker
  owning their partition, and not again after every worker crashed and restarted; the chains
  still verify.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from streams.audit.state_changes import CONTRACT_ENDED_KEY
from streams.kafka.topics import CONSENTS, POPULATION
from streams.state.contract import Contract
from streams.state.erasure import contract_end, ending_notice_id
from streams.state.subjects import resolve, set_consent, set_population
from tests.integration import routing_harness as harness
from tests.integration.routing_harness import SIRET, Bus, Offsets, Reader, Record, header

pytest_plugins = ("tests.integration.routing_harness",)

BOURSIER = "statut_etudiant_boursier"


def _state_records(bus: Bus, records: list[Record], contract: Contract) -> list[dict[str, Any]]:
    """The state change records about ``contract`` among audit records."""
    audits = [bus.audit(r) for r in records if r.key is not None and r.key.startswith(b"state.")]
    return [a for a in audits if a["contract_id"] == contract.id]


Audits = list[dict[str, Any]]


def _subjects(audits: Audits) -> Audits:
    """The changes about persons (consents, enrolments), not about the contract itself."""
    return [a for a in audits if a["state_topic"] in (CONSENTS, POPULATION)]


def _changes(kind: str) -> Callable[[Audits], bool]:
    return lambda audits: any(a["change"] == kind for a in audits)


def _at_least(count: int) -> Callable[[Audits], bool]:
    return lambda audits: len(_subjects(audits)) >= count


async def _audited(bus: Bus, start: Offsets, contract: Contract,
                   done: Callable[[Audits], bool]) -> Audits:
    """The state change records about ``contract`` from ``start``, once ``done`` with them."""
    async with Reader(bus.settings, start,
                      lambda r: r.key is not None and r.key.startswith(b"state.")) as reader:
        await reader.until(lambda rs: done(_state_records(bus, rs, contract)),
                           f"the state change records of {contract.id}", bus.workers)
        return _state_records(bus, await reader.drain(), contract)


async def _notices(bus: Bus, contract: Contract, start: Offsets, expected: int) -> list[Record]:
    records = await bus.delivered(contract, expected, event_type="erasure_notice", start=start)
    return [r for r in records if header(r, "ce_type") == "erasure_notice"]


async def test_a_removal_sends_the_enrolled_person_s_subscriber_a_notice_audited(
        bus: Bus) -> None:
    contract = bus.contract("removed", {BOURSIER: ["echelon"]}, population="enrolled")
    await bus.apply(contract)
    enrolled, stranger = harness.fresh_people(2)
    deliveries = await harness.end_offsets(bus.settings, [contract.delivery_topic])
    start = await harness.audit_start(bus.settings)
    await set_population(bus.settings, contract, resolve(bus.settings, [enrolled.nir]), True)
    code, _, err = await bus.run_cli("population", "remove", contract.id, enrolled.nir,
                                     stranger.nir)
    assert code == 0, err

    audits = _subjects(await _audited(bus, start, contract, _at_least(3)))
    by_subject = Counter((a["subject_ref"], a["change"]) for a in audits)
    assert by_subject == {(bus.reference(enrolled), "enrolled"): 1,
                          (bus.reference(enrolled), "removed"): 1,
                          (bus.reference(stranger), "removed"): 1}
    removal = next(a for a in audits
                   if (a["subject_ref"], a["change"]) == (bus.reference(enrolled), "removed"))
    assert (removal["decision"], removal["erasure_reason"]) == ("recorded", "population_removed")
    assert removal["state_topic"] == "bus.population"
    notices = await _notices(bus, contract, deliveries, 1)
    assert [header(n, "ce_subject") for n in notices] == [bus.pseudonym(contract, enrolled)]
    assert header(notices[0], "ce_id") == removal["delivery_id"]
    notice = bus.audit(notices[0])
    assert (notice["reason"], notice["subject_pseudonym"]) == (
        "population_removed", bus.pseudonym(contract, enrolled))


async def test_a_revoked_contract_gets_one_contract_wide_notice_audited(bus: Bus) -> None:
    contract = bus.contract("ended-revoked", {BOURSIER: ["echelon"]})
    await bus.apply(contract)
    deliveries = await harness.end_offsets(bus.settings, [contract.delivery_topic])
    start = await harness.audit_start(bus.settings)
    code, _, err = await bus.run_cli("contracts", "revoke", contract.id, "--yes")
    assert code == 0, err

    audits = await _audited(bus, start, contract, _changes("contract_ended"))
    changes = [a["change"] for a in audits if a["change"] != "contract_applied"]
    assert changes == ["contract_revoked", "contract_ended"]
    ended = audits[-1]
    notices = await _notices(bus, contract, deliveries, 1)
    assert len(notices) == 1
    assert header(notices[0], "ce_subject") is None, "about the whole contract"
    assert header(notices[0], "ce_id") == ended["delivery_id"]
    notice = bus.audit(notices[0])
    assert (notice["reason"], notice["subject_pseudonym"]) == ("contract_ended", None)
    assert (ended["subject_ref"], ended["erasure_reason"]) == ("", "contract_ended")
    code, out, err = await bus.run_cli("consume", contract.id, "--from-beginning",
                                       "--timeout", "5")
    assert code == 0, err
    (read,) = [json.loads(line) for line in out.splitlines()
               if json.loads(line)["type"] == "erasure_notice"]
    assert "subject" not in read, "the subscriber's client reads a notice about no one"
    assert (read["id"], read["data"]["reason"]) == (ended["delivery_id"], "contract_ended")


async def test_a_contract_whose_last_day_passed_gets_its_notice_from_the_workers_alone(
        bus: Bus) -> None:
    day = harness.today()
    contract = bus.contract("ended-expired", {BOURSIER: ["echelon"]},
                            valid_from=day - timedelta(days=60), valid_until=day)
    await bus.apply(contract)
    start = await harness.audit_start(bus.settings)
    deliveries = await harness.end_offsets(bus.settings, [contract.delivery_topic])
    ended = bus.contract("ended-expired", {BOURSIER: ["echelon"]},
                         valid_from=day - timedelta(days=60), valid_until=day - timedelta(days=1))
    assert ended.id == contract.id
    await bus.apply(ended)  # the same contract, its last day moved back: no other command

    audits = await _audited(bus, start, contract, _changes("contract_ended"))
    assert [a["change"] for a in audits][-2:] == ["contract_applied", "contract_ended"]
    end = contract_end(ended)
    assert end is not None
    assert audits[-1]["delivery_id"] == ending_notice_id(contract.id, end), "deduplicable"
    notices = await _notices(bus, contract, deliveries, 1)
    assert [header(n, "ce_id") for n in notices] == [audits[-1]["delivery_id"]]


async def test_state_changes_are_audited_once_each_even_after_every_worker_restarted(
        bus: Bus) -> None:
    contract = bus.contract("audited-once", {BOURSIER: ["echelon"]}, consent="opt_in",
                            population="enrolled")
    revoked = bus.contract("audited-once-revoked", {BOURSIER: ["echelon"]})
    await bus.apply(contract, revoked)
    person, later = harness.fresh_people(2)
    subjects = resolve(bus.settings, [person.nir])
    start = await harness.audit_start(bus.settings)
    await set_population(bus.settings, contract, subjects, True)
    await set_consent(bus.settings, contract, subjects, "granted", "counter",
                      collected_by=SIRET, evidence_ref="dossier-42")
    await set_consent(bus.settings, contract, subjects, "withdrawn", "online_portal")
    code, _, err = await bus.run_cli("contracts", "revoke", revoked.id, "--yes")
    assert code == 0, err
    before = _subjects(await _audited(bus, start, contract, _at_least(3)))
    await _audited(bus, start, revoked, _changes("contract_ended"))
    granted = next(a for a in before if a["change"] == "consent_granted")
    assert (granted["channel"], granted["principal"], granted["evidence_ref"]) == (
        "counter", SIRET, "dossier-42")
    withdrawn = next(a for a in before if a["change"] == "consent_withdrawn")
    assert (withdrawn["erasure_reason"], withdrawn["delivery_id"]) == (
        "consent_withdrawn", None), "the withdrawal's notice is sent by who recorded it"

    for worker in list(bus.workers.workers):
        bus.workers.kill(worker)
    bus.workers.restart_exited()
    await bus.workers.wait_ready(bus.settings)
    # A change after the restart: once audited, everything before it was read again.
    await set_population(bus.settings, contract, resolve(bus.settings, [later.nir]), True)
    after = _subjects(await _audited(bus, start, contract, _at_least(4)))
    records = await harness.read_all(bus.settings, start)
    positions = Counter((a["state_topic"], a["state_partition"], a["state_offset"])
                        for a in _subjects(_state_records(bus, records, contract)))
    assert len(positions) == 4, positions
    assert set(positions.values()) == {1}, positions
    assert {a["subject_ref"] for a in after} == {bus.reference(person), bus.reference(later)}
    ends = [bus.audit(r) for r in records if r.key == CONTRACT_ENDED_KEY]
    assert [a["contract_id"] for a in ends].count(revoked.id) == 1, "its end notified once"
    code, out, err = await bus.run_cli("audit", "verify", timeout=300)
    assert code == 0, out + err
