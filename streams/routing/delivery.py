"""What a subscriber receives: the CloudEvent of a delivery, its headers and its expiry.

A delivery is a CloudEvent in the Kafka binary mode. Nothing in it is copied from the provider's
headers as they came: the source and type are the ones the topic stands for, the id is the
subscriber's own id for the event, the time is the event's day, the subject is the subscriber's
pseudonym (or the company's SIREN), and the contract, purpose, legal basis and expiry travel as
extension attributes. The value is the event's data projected on the contract's fields,
Avro-encoded with the contract's delivery schema. The key is the pseudonym, so one person's changes
stay in order for the subscriber.

So two subscribers of one event share no value the bus adds that could join their deliveries: not
the id, not a time finer than the day (ARCHITECTURE.md, threat model).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

from schemas.cloudevent import AVRO_CONTENT_TYPE, EVENT_ID
from schemas.nir_detection import contains_nir
from streams.privacy.pseudonyms import SubscriberPseudonyms
from streams.routing.records import UnroutableRecord
from streams.state.contract import Contract

_READ: Final = frozenset({"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject",
                          "ce_time"})
"""The provider's headers the router reads; every other header is ignored, never passed on."""
_REQUIRED: Final = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject")
_MAX_TIME_LENGTH: Final = 40
_NOT_UTF8: Final = re.compile("[\ud800-\udfff]")
"""What a header name read from bytes that are not UTF-8 holds (``streams.kafka.record_reader``
keeps such bytes as lone surrogates) and no text decoded from UTF-8 can."""


@dataclass(frozen=True, slots=True)
class EventHeaders:
    """The CloudEvents attributes of a provider record the router relies on, checked.

    Read from the record's ``ce_`` headers, each at most once and with a value: a header given
    twice is ambiguous (which one would a subscriber's library read?) and a null one is legal in
    Kafka but means nothing here, so either makes the record a dead letter, as does a source or
    type other than the topic's.
    """

    id: str
    source: str
    type: str
    subject: str
    day: bytes | None
    """The event's ``time`` reduced to its day (UTC), as a delivery carries it; None without."""

    @classmethod
    def read(cls, headers: list[tuple[str, bytes | None]], provider: str,
             dataset: str) -> EventHeaders:
        """The attributes of a record read on ``provider``'s topic for ``dataset``."""
        found = _attributes(headers)
        missing = [name for name in _REQUIRED if name not in found]
        if missing:
            raise UnroutableRecord(missing[0], "missing header: not a CloudEvent")
        if found["ce_specversion"] != "1.0":
            raise UnroutableRecord("ce_specversion", "unsupported CloudEvents version "
                                   "(expected 1.0)")
        if found["ce_source"] != provider:
            raise UnroutableRecord("ce_source", "does not name the provider of its topic")
        if found["ce_type"] != dataset:
            raise UnroutableRecord("ce_type", "does not name the dataset of its topic")
        event_id = found["ce_id"]
        if EVENT_ID.fullmatch(event_id) is None:  # as at the edge: a writer may bypass it
            raise UnroutableRecord("ce_id", "not an event id (a UUID, or 1 to 64 letters, "
                                   "digits, dots, underscores or hyphens)")
        if contains_nir(event_id):
            raise UnroutableRecord("ce_id", "holds a personal identifier (a NIR)")
        when = found.get("ce_time")
        return cls(event_id, provider, dataset, found["ce_subject"],
                   None if when is None else _day(when))


def _attributes(headers: list[tuple[str, bytes | None]]) -> dict[str, str]:
    """The headers the router reads, decoded, each present at most once and with a value."""
    found: dict[str, str] = {}
    for name, value in headers:
        if name not in _READ:
            if not name.isascii() and _NOT_UTF8.search(name):
                raise UnroutableRecord("headers", "a header name is not UTF-8 text")
            continue
        if name in found:
            raise UnroutableRecord(name, "header given more than once")
        if value is None:
            raise UnroutableRecord(name, "header without a value")
        try:
            found[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise UnroutableRecord(name, "header value is not UTF-8 text") from None
    return found


def _day(text: str) -> bytes:
    """An RFC 3339 instant reduced to its day in UTC, as an RFC 3339 instant at midnight."""
    try:
        if len(text) > _MAX_TIME_LENGTH:
            raise ValueError
        instant = datetime.fromisoformat(text)
        if instant.tzinfo is None:
            raise ValueError
        return _midnight(instant.astimezone(UTC).date())
    except (ValueError, OverflowError):
        raise UnroutableRecord("ce_time", "not an RFC 3339 instant with a time zone") from None


def expiry_day(at: datetime, retention: timedelta) -> date:
    """The day a delivery made at ``at`` expires under ``retention``: its ``expiresat`` is the
    start of that day (UTC). A file sink applies the same rule to a record that carries no
    expiry of its own (an erasure notice)."""
    return (at + retention).astimezone(UTC).date()


def _midnight(day: date) -> bytes:
    return f"{day.isoformat()}T00:00:00Z".encode()


def extension_headers(contract: Contract) -> tuple[tuple[str, bytes], ...]:
    """The contract's CloudEvents extension attributes, encoded once per contract change."""
    return (("ce_contract", contract.id.encode()), ("ce_purpose", contract.purpose.encode()),
            ("ce_legalbasis", contract.legal_basis.encode()))


@dataclass(frozen=True)
class DeliveryChannel:
    """Everything needed to deliver under one contract, built once per contract change."""

    topic: str
    subject: str
    retention: timedelta
    pseudonyms: SubscriberPseudonyms
    extensions: tuple[tuple[str, bytes], ...]

    def expiry(self, routed_at: datetime) -> bytes:
        """The ``expiresat`` of what is delivered at ``routed_at`` (once per batch): the start of
        the day the retention ends on, so it tells no instant finer than the day and never
        lets a subscriber keep an event longer than its contract allows."""
        return _midnight(expiry_day(routed_at, self.retention))

    def delivery_id(self, event: EventHeaders) -> str:
        """The subscriber's own id for ``event``: the delivery's ``ce_id``, which its audit
        record names too, so that the two join without the pseudonym secret."""
        return self.pseudonyms.event_id(event.source, event.id)

    def headers(self, event: EventHeaders, delivery_id: str, pseudonym: bytes,
                expires: bytes) -> list[tuple[str, bytes]]:
        """Binary-mode headers of a delivery, built by the bus alone (see the module's doc)."""
        headers = [("ce_specversion", b"1.0"), ("ce_id", delivery_id.encode()),
                   ("ce_source", event.source.encode()), ("ce_type", event.type.encode())]
        if event.day is not None:
            headers.append(("ce_time", event.day))
        return [*headers, ("content-type", _CONTENT_TYPE), ("ce_subject", pseudonym),
                *self.extensions, ("ce_expiresat", expires)]


_CONTENT_TYPE: Final = AVRO_CONTENT_TYPE.encode()
