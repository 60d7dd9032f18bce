"""The routing decision: for one event, which contracts receive it and which withhold it, why.

A contract's ``consent`` mode decides how a person's recorded choice is read: ``not_required``
ignores it, ``opt_in`` needs a standing grant, ``opt_out`` passes unless the person objected. A
contract's ``population`` decides whether the subscriber receives everyone's changes (``all``)
or only those of persons it enrolled (``enrolled``), the way the Belgian Crossroads Bank for
Social Security forwards a change only to institutions that hold a file on that person.

Pure and synchronous: no Kafka, no clock of its own. The worker feeds it decoded events and the
current :class:`~streams.state.bus_state.BusState`; property tests feed it anything. The order of
the checks is the order an auditor reads them: is the contract in force, does the subscriber follow
this person, does the person's consent allow it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal

from streams.state.bus_state import BusState, ConsentStatus
from streams.state.contract import ConsentMode, Contract, PopulationMode

WithheldReason = Literal["not_enrolled", "no_consent", "objection", "contract_inactive",
                         "contract_invalid"]
"""Why a contract did not receive an event; every withheld decision is audited with one."""


def population_reason(mode: PopulationMode, enrolled: bool) -> WithheldReason | None:
    """Why a contract's population rule withholds this subject, or None when it passes."""
    if mode == "enrolled" and not enrolled:
        return "not_enrolled"
    return None


def consent_reason(mode: ConsentMode, status: ConsentStatus | None) -> WithheldReason | None:
    """Why a contract's consent rule withholds, given the person's latest recorded choice."""
    if mode == "opt_in" and status != "granted":
        return "no_consent"
    if mode == "opt_out" and status == "withdrawn":
        return "objection"
    return None


@dataclass(frozen=True)
class ContractTerms:
    """One contract's terms for one dataset: the fields it may receive of it."""

    contract: Contract
    dataset: str
    fields: tuple[str, ...]
    invalid: bool = False
    """The contract no longer compiles against the catalog: it decides nothing but
    ``contract_invalid`` until it is fixed."""

    @property
    def contract_id(self) -> str:
        return self.contract.id

    def invalidated(self) -> ContractTerms:
        """These terms, for a contract found not to compile any more."""
        return replace(self, invalid=True)


@dataclass(frozen=True)
class Decision:
    """One contract's verdict on one event."""

    terms: ContractTerms
    reason: WithheldReason | None

    @property
    def delivered(self) -> bool:
        return self.reason is None


INACTIVE_AUDIT_GRACE = timedelta(days=30)
"""How long a revoked or expired contract keeps being audited as ``contract_inactive``."""


def still_audited(contract: Contract, day: date | None) -> bool:
    """Whether a contract is still in the routing index on ``day``.

    A revoked or expired contract is audited (``contract_inactive``) for a grace period, long
    enough to prove it stopped receiving; after that it leaves the index, so the audit trail
    does not grow with every contract ever applied.
    """
    if day is None:
        return True
    ended: date | None = None
    if contract.revoked and contract.revoked_at is not None:
        ended = contract.revoked_at.date()
    elif contract.valid_until is not None:
        ended = contract.valid_until
    return ended is None or day <= ended + INACTIVE_AUDIT_GRACE


def terms_by_dataset(contracts: Mapping[str, Contract], day: date | None = None,
                     ) -> dict[str, tuple[ContractTerms, ...]]:
    """Index contracts by the datasets they name, recently ended ones included.

    Inactive contracts stay in the index for :data:`INACTIVE_AUDIT_GRACE` so that their
    refusals are audited too (``contract_inactive``), rather than silently ignored.
    """
    index: dict[str, list[ContractTerms]] = {}
    for contract in contracts.values():
        if not still_audited(contract, day):
            continue
        for dataset, fields in contract.datasets.items():
            index.setdefault(dataset, []).append(ContractTerms(contract, dataset, fields))
    return {dataset: tuple(terms) for dataset, terms in index.items()}


def decide(terms: ContractTerms, subject: str, state: BusState, day: date) -> Decision:
    """The verdict of one contract on an event about ``subject`` routed on ``day``."""
    contract = terms.contract
    if not contract.is_active(day):
        return Decision(terms, "contract_inactive")
    if terms.invalid:
        return Decision(terms, "contract_invalid")
    key = (contract.id, subject)
    reason = population_reason(contract.population, key in state.enrolled)
    if reason is None:
        reason = consent_reason(contract.consent, state.consents.get(key))
    return Decision(terms, reason)


def decide_all(candidates: Sequence[ContractTerms], subject: str, state: BusState,
               day: date) -> list[Decision]:
    """Every contract naming the event's dataset, each with its verdict."""
    return [decide(terms, subject, state, day) for terms in candidates]
