"""What one record of the audit or state topics adds to its person's journal.

A journal entry is a routing decision about the person (a delivery or a withheld event), or a
change of their consent or enrolment. Each is made from one record, as decoded; a record that
is about no person (a file sink's deletion), or that this version does not know how to read (a
decision a newer audit schema added, read back as ``withheld`` without a reason), makes none:
the journal shows what it understands and skips the rest, rather than stopping. A record whose
subject is malformed raises :class:`MalformedSubject` (a ``ValueError``), which the follower
logs by place and skips.

Pure: no Kafka, no store. The follower (:mod:`streams.journal.follower`) decodes records and
the view (:mod:`streams.journal.view`) keeps what these functions make of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

from schemas.identifiers import is_bus_subject
from streams.state.directory import Change, consent_change, population_change, release_of

EntryKind = Literal["delivery", "withheld", "consent", "enrolment"]


@dataclass(frozen=True)
class Source:
    """Where a record was read: entries are keyed by it, so that reading a record again
    writes the same entry again rather than a second one."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Entry:
    """One line of a person's journal, as kept in the view."""

    kind: EntryKind
    at: datetime
    contract_id: str
    subscriber: str | None = None
    dataset: str | None = None
    fields: tuple[str, ...] = field(default=())
    reason: str | None = None
    delivery_id: str | None = None
    status: str | None = None
    """A consent entry's decision: granted or withdrawn."""
    channel: str | None = None
    enrolled: bool | None = None

    def encode(self) -> bytes:
        """Compact JSON, unset attributes left out (a rebuild writes one per decision:
        ``dataclasses.asdict`` copied each instant deeply, most of a rebuild's time)."""
        data: dict[str, Any] = {name: value for name in _ATTRIBUTES
                                if (value := getattr(self, name)) not in (None, ())}
        data["at"] = self.at.isoformat()
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes) -> Entry:
        data = json.loads(value)
        data["at"] = datetime.fromisoformat(data["at"])
        data["fields"] = tuple(data.get("fields", ()))
        return cls(**data)


_ATTRIBUTES = tuple(attribute.name for attribute in fields(Entry))


@dataclass(frozen=True)
class Made:
    """An entry about ``subject``, and the change it makes to their file (state records)."""

    subject: str
    entry: Entry
    change: Change | None = None


class MalformedSubject(ValueError):
    """A record's subject is no subject reference nor SIREN: kept, a forged one such as a
    person's reference followed by more would fall into that person's journal (their entries
    are one prefix scan)."""


def _subject(value: Any) -> str:
    if not is_bus_subject(value):
        raise MalformedSubject("subject: neither a subject reference nor a SIREN")
    subject: str = value
    return subject


def _instant(value: Any) -> datetime:
    """A decoded timestamp (fastavro reads ``timestamp-millis`` as an aware datetime)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int):
        return datetime.fromtimestamp(value / 1000, UTC)
    raise ValueError("not a timestamp")


def from_audit(datum: Mapping[str, Any]) -> Made | None:
    """The entry of an audit record; None for one about no person (a deletion) or one whose
    decision this version does not know."""
    if not datum.get("subject_ref"):
        return None
    subject = _subject(datum["subject_ref"])
    decision = datum.get("decision")
    common = {"at": _instant(datum["decided_at"]), "contract_id": datum["contract_id"],
              "subscriber": datum.get("subscriber"), "dataset": datum.get("dataset")}
    if decision == "delivered":
        return Made(subject, Entry("delivery", fields=tuple(datum.get("fields_delivered") or ()),
                                   delivery_id=datum.get("delivery_id"), **common))
    if decision == "withheld" and datum.get("reason"):
        return Made(subject, Entry("withheld", reason=datum["reason"], **common))
    return None


def from_consent(datum: Mapping[str, Any]) -> Made:
    """The entry of a consent record, and its change to the person's file."""
    change = consent_change(datum)
    _subject(change.subject)
    return Made(change.subject, Entry("consent", _instant(datum["recorded_at"]),
                                      change.contract_id, status=datum["status"],
                                      channel=datum.get("channel")), change)


def from_population(datum: Mapping[str, Any]) -> Made:
    """The entry of a population record (an enrolment or a release)."""
    change = population_change(datum)
    _subject(change.subject)
    return Made(change.subject, Entry("enrolment", _instant(datum["recorded_at"]),
                                      change.contract_id, enrolled=bool(datum["enrolled"])),
                change)


def from_release(key: str, timestamp_ms: int) -> Made | None:
    """The entry of a population tombstone (the enrolment erased), dated by the record."""
    change = release_of(key)
    if change is None:
        return None
    _subject(change.subject)
    return Made(change.subject, Entry("enrolment", _instant(timestamp_ms), change.contract_id,
                                      enrolled=False), change)
