"""The routing decision: for one event, which contracts receive it and which withhold it, why.

A contract's ``consent`` mode decides how a person's recorded choice is read: ``not_required``
ignores it, ``opt_in`` needs a standing grant, ``opt_out`` passes unless the person objected. A
contract's ``population`` decides whether the subscriber receives everyone's changes (``all``)
or only those of persons it enrolled (``enrolled``), the way the Belgian Crossroads Bank for
Social Security forwards a change only to institutions that hold a file on that person.

Which contracts decide at all is the reference directory's answer
(:mod:`streams.state.directory`): every ``population: all`` contract naming the dataset, and the
``enrolled`` ones the subject's file names. A contract that does not follow the person took no
decision about them and leaves no audit record: the cost of an event, and the audit trail, follow
the contracts that concern its person, not the contracts that exist.

Pure and synchronous: no Kafka, no clock of its own. The worker feeds it decoded events and the
subject's file; property tests feed it anything. The order of the checks is the order an auditor
reads them: is the contract in force, does the subscriber follow this person, does the person's
consent allow it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Literal

from streams.state.contract import ConsentMode, Contract, PopulationMode
from streams.state.directory import ConsentStatus, Standing, SubjectFile

WithheldReason = Literal["not_enrolled", "no_consent", "objection", "contract_inactive",
                         "contract_invalid"]
"""Why a contract did not receive an event; every withheld decision is audited with one.
``not_enrolled`` is no longer decided (a contract that does not follow a person takes no
decision about it) but stays a word of the audit record, which older records carry."""
NO_STANDING = Standing()


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


@dataclass(frozen=True)
class DatasetTerms:
    """The contracts naming one dataset, as routing reads them for each of its events."""

    everyone: tuple[ContractTerms, ...] = ()
    """``population: all``: each decides every event."""
    followers: Mapping[str, ContractTerms] = field(default_factory=dict)
    """``population: enrolled``, by contract id: each decides the events of the persons whose
    file names it as enrolled, and no other."""


NO_TERMS = DatasetTerms()


def terms_by_dataset(contracts: Mapping[str, Contract], day: date | None = None,
                     ) -> dict[str, DatasetTerms]:
    """Index contracts by the datasets they name, recently ended ones included.

    Inactive contracts stay in the index for :data:`INACTIVE_AUDIT_GRACE` so that their
    refusals are audited too (``contract_inactive``), rather than silently ignored.
    """
    everyone: dict[str, list[ContractTerms]] = {}
    followers: dict[str, dict[str, ContractTerms]] = {}
    for contract in sorted(contracts.values(), key=lambda c: c.id):
        if not still_audited(contract, day):
            continue
        for dataset, fields in contract.datasets.items():
            terms = ContractTerms(contract, dataset, fields)
            if contract.population == "enrolled":
                followers.setdefault(dataset, {})[contract.id] = terms
            else:
                everyone.setdefault(dataset, []).append(terms)
    return {dataset: DatasetTerms(tuple(everyone.get(dataset, ())), followers.get(dataset, {}))
            for dataset in everyone.keys() | followers.keys()}


def decide(terms: ContractTerms, standing: Standing | None, day: date) -> Decision:
    """The verdict of one contract on an event about a subject that stands so with it."""
    contract = terms.contract
    if not contract.is_active(day):
        return Decision(terms, "contract_inactive")
    if terms.invalid:
        return Decision(terms, "contract_invalid")
    standing = standing or NO_STANDING
    reason = population_reason(contract.population, standing.enrolled)
    if reason is None:
        reason = consent_reason(contract.consent, standing.consent)
    return Decision(terms, reason)


def decide_all(terms: DatasetTerms, file: SubjectFile, day: date) -> list[Decision]:
    """The verdicts on an event whose subject's file is ``file``: every ``population: all``
    contract of its dataset, then every ``enrolled`` one that follows the subject. A contract
    that does not follow the subject takes no decision about it, and leaves no trace."""
    decisions = [decide(each, file.get(each.contract_id), day) for each in terms.everyone]
    if terms.followers:
        for contract_id, standing in file.items():
            follower = terms.followers.get(contract_id)
            if follower is not None and standing.enrolled:
                decisions.append(decide(follower, standing, day))
    return decisions
