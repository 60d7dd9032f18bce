"""The two answers the journal gives a person: what the bus did, and what it would do today.

Both read the view (:mod:`streams.journal.view`) only. The journal joins each entry to its
contract as recorded now (purpose, legal basis, retention), so that a delivery says until when
the subscriber may keep it. The upcoming view asks the routing decision itself
(:func:`streams.routing.rules.decide_all`) about a synthetic event of every dataset, under the
person's file and today's contracts: it cannot drift from what routing would decide. It does not
know which contracts no longer compile against the catalog (the router finds that out when it
compiles them): it reads every recorded contract as valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

from streams.journal.entries import Entry
from streams.journal.view import JournalView
from streams.routing.rules import decide_all, terms_by_dataset
from streams.state.contract import ConsentMode, Contract
from streams.state.directory import SubjectFile


@dataclass(frozen=True)
class Line:
    """One entry of the journal, with what its contract says now (None: contract unknown)."""

    kind: str
    at: datetime
    contract_id: str
    subscriber: str | None
    purpose: str | None
    legal_basis: str | None
    dataset: str | None = None
    fields: tuple[str, ...] = ()
    kept_until: datetime | None = None
    """A delivery: the end of the retention the contract allows the subscriber."""
    reason: str | None = None
    delivery_id: str | None = None
    status: str | None = None
    channel: str | None = None
    enrolled: bool | None = None


@dataclass(frozen=True)
class Journal:
    """Everything the bus did about one person, oldest first in each part."""

    deliveries: list[Line]
    withheld: list[Line]
    consents: list[Line]
    enrolments: list[Line]


@dataclass(frozen=True)
class Receiver:
    """What one contract would do with a change of ``dataset`` about the person today."""

    dataset: str
    contract_id: str
    subscriber: str
    purpose: str
    legal_basis: str
    consent: ConsentMode
    would_receive: bool
    fields: tuple[str, ...]
    reason: str | None


def _line(entry: Entry, contract: Contract | None) -> Line:
    kept_until = None
    if entry.kind == "delivery" and contract is not None:
        kept_until = entry.at + timedelta(milliseconds=contract.retention_ms)
    return Line(entry.kind, entry.at, entry.contract_id,
                entry.subscriber or (contract.subscriber if contract else None),
                contract.purpose if contract else None,
                contract.legal_basis if contract else None, entry.dataset, entry.fields,
                kept_until, entry.reason, entry.delivery_id, entry.status, entry.channel,
                entry.enrolled)


def journal(view: JournalView, subject: str) -> Journal:
    """Every entry of ``subject`` (a subject reference or a SIREN), sorted into its parts."""
    contracts = view.contracts()
    lines = [_line(entry, contracts.get(entry.contract_id)) for entry in view.entries(subject)]
    parts: dict[str, list[Line]] = {"delivery": [], "withheld": [], "consent": [],
                                    "enrolment": []}
    for line in lines:
        parts[line.kind].append(line)
    return Journal(parts["delivery"], parts["withheld"], parts["consent"], parts["enrolment"])


def receivers(contracts: Mapping[str, Contract], file: SubjectFile,
              day: date) -> list[Receiver]:
    """Every decision routing would take today on a change of each dataset about a subject
    whose file is ``file``, by dataset then contract."""
    found = []
    for dataset, terms in sorted(terms_by_dataset(contracts, day).items()):
        for decision in decide_all(terms, file, day):
            contract = decision.terms.contract
            found.append(Receiver(dataset, contract.id, contract.subscriber, contract.purpose,
                                  contract.legal_basis, contract.consent, decision.delivered,
                                  decision.terms.fields if decision.delivered else (),
                                  decision.reason))
    return found


def upcoming(view: JournalView, subject: str, day: date) -> list[Receiver]:
    """Who would receive what, and who would not and why, if each dataset changed today."""
    return receivers(view.contracts(), view.file_of(subject), day)


def to_json(value: Journal | list[Receiver]) -> Any:
    """The JSON form of an answer (instants in ISO 8601)."""
    return _jsonable(asdict(value) if isinstance(value, Journal)
                     else [asdict(each) for each in value])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
