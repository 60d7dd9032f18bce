"""The reference directory: for each subject, the contracts that follow it and its consents.

The Belgian Crossroads Bank for Social Security forwards a change only to the institutions that
hold a file on the person; this is the same index. A subject's *file* says, per contract, whether
the contract enrolled it and the person's latest consent decision for it. Routing an event reads
one file, that of its subject, and decides the ``population: all`` contracts of its dataset and the
``enrolled`` contracts the file names: the cost of an event follows the contracts that concern its
person, not the contracts that exist.

Plain data, no storage of its own: :class:`MemoryDirectory` keeps files in a dict (tests, and
what the rules see); the worker keeps them on disk, one store per partition
(:mod:`streams.state.directory_store`), with the same encoding and the same folding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

ConsentStatus = Literal["granted", "withdrawn"]
"""A person's recorded choice for one contract; the latest one is in force."""


@dataclass(frozen=True, slots=True)
class Standing:
    """Where one subject stands with one contract: enrolled or not, and its latest consent."""

    enrolled: bool = False
    consent: ConsentStatus | None = None

    @property
    def empty(self) -> bool:
        """Nothing recorded: the entry says no more than its absence would."""
        return not self.enrolled and self.consent is None


SubjectFile = Mapping[str, Standing]
"""One subject's file: contract id → standing, for the contracts with something recorded."""
NO_FILE: SubjectFile = {}

_STANDINGS = {"-": Standing(), "E": Standing(True), "g": Standing(False, "granted"),
              "Eg": Standing(True, "granted"), "w": Standing(False, "withdrawn"),
              "Ew": Standing(True, "withdrawn")}
_FLAGS = {(s.enrolled, s.consent): flags for flags, s in _STANDINGS.items()}


def encode_file(file: SubjectFile) -> bytes:
    """A file as stored: compact JSON, contracts in order, so that equal files are equal bytes
    and routing decides a subject's enrolled contracts in the same order on every worker."""
    return json.dumps({cid: _FLAGS[(s.enrolled, s.consent)] for cid, s in sorted(file.items())},
                      separators=(",", ":")).encode()


def decode_file(value: bytes) -> dict[str, Standing]:
    """A stored file read back (:func:`encode_file`)."""
    return {cid: _STANDINGS[flags] for cid, flags in json.loads(value).items()}


def with_enrolment(file: SubjectFile, contract_id: str, enrolled: bool) -> dict[str, Standing]:
    """``file`` after the contract enrolled (or released) its subject."""
    return _with(file, contract_id, replace(file.get(contract_id, Standing()), enrolled=enrolled))


def with_consent(file: SubjectFile, contract_id: str,
                 status: ConsentStatus) -> dict[str, Standing]:
    """``file`` after the person's latest consent decision for the contract."""
    return _with(file, contract_id, replace(file.get(contract_id, Standing()), consent=status))


MAX_CONTRACTS_PER_SUBJECT = 1000
"""Most contracts one subject's file may name. A family is followed by a handful; a file grown
past this (a writer of the state topics enrolling one subject in everything) would make every
event about that subject, and every change to its file, cost as much as the file is long."""


class SubjectFileFull(ValueError):
    """A change that would name one more contract in a file already at the limit."""


def _with(file: SubjectFile, contract_id: str, standing: Standing) -> dict[str, Standing]:
    if (contract_id not in file and not standing.empty
            and len(file) >= MAX_CONTRACTS_PER_SUBJECT):
        raise SubjectFileFull(f"a subject's file names {MAX_CONTRACTS_PER_SUBJECT} contracts "
                              "already")
    changed = dict(file)
    if standing.empty:
        changed.pop(contract_id, None)
    else:
        changed[contract_id] = standing
    return changed


@dataclass(frozen=True, slots=True)
class Change:
    """What one record of ``bus.population`` or ``bus.consents`` changes in a subject's file."""

    contract_id: str
    subject: str
    enrolled: bool | None = None
    consent: ConsentStatus | None = None

    def applied_to(self, file: SubjectFile) -> dict[str, Standing]:
        if self.enrolled is not None:
            return with_enrolment(file, self.contract_id, self.enrolled)
        if self.consent is not None:
            return with_consent(file, self.contract_id, self.consent)
        return dict(file)


def population_change(record: Mapping[str, Any]) -> Change:
    """A population record: the contract enrols (or releases) the subject."""
    return Change(record["contract_id"], record["subject_ref"], enrolled=bool(record["enrolled"]))


def consent_change(record: Mapping[str, Any]) -> Change:
    """A consent record: the person's latest decision for the contract."""
    status = record["status"]
    if status not in ("granted", "withdrawn"):
        raise ValueError("status: neither granted nor withdrawn")
    return Change(record["contract_id"], record["subject_ref"], consent=status)


def release_of(key: str) -> Change | None:
    """A population tombstone (key ``contract/subject``): the enrolment is gone. Consent
    tombstones change nothing: each consent key is one decision of the history, and erasing an
    old decision must not revive an older one."""
    if "/" not in key:
        return None
    contract_id, subject = key.split("/", 1)
    return Change(contract_id, subject, enrolled=False)


class SubjectDirectory(Protocol):
    """Where routing reads a subject's file and the state follower folds changes."""

    def partition_of(self, subject: str) -> int | None:
        """The partition whose events may concern ``subject``; None when not partitioned."""

    def file_of(self, subject: str, partition: int) -> SubjectFile:
        """``subject``'s file, read from the state of ``partition`` (its events' partition)."""

    def apply(self, change: Change, partition: int) -> None:
        """Fold ``change``, read from ``partition`` of its state topic."""


class MemoryDirectory:
    """Every subject's file in a dict, whatever its partition (tests and small tools)."""

    def __init__(self) -> None:
        self.files: dict[str, SubjectFile] = {}

    def partition_of(self, subject: str) -> int | None:  # noqa: ARG002
        return None

    def file_of(self, subject: str, partition: int = 0) -> SubjectFile:  # noqa: ARG002
        return self.files.get(subject, NO_FILE)

    def apply(self, change: Change, partition: int = 0) -> None:  # noqa: ARG002
        file = change.applied_to(self.file_of(change.subject))
        if file:
            self.files[change.subject] = file
        else:
            self.files.pop(change.subject, None)

    def enrol(self, contract_id: str, subject: str, enrolled: bool = True) -> None:
        self.apply(Change(contract_id, subject, enrolled=enrolled))

    def consent(self, contract_id: str, subject: str, status: ConsentStatus) -> None:
        self.apply(Change(contract_id, subject, consent=status))
