"""What the worker writes: deliveries, their audit records, and dead letters.

A delivery is a CloudEvent in the Kafka binary mode: the original event id, source, type and
time; the subscriber's pseudonym (or the company's SIREN) as subject; the contract, purpose,
legal basis and expiry as extension attributes; the value is the event's data projected on the
contract's fields, Avro-encoded with the contract's delivery schema. The key is the pseudonym,
so one person's changes stay in order for the subscriber.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from schemas.codec import rfc3339_millis
from schemas.identifiers import contains_nir
from streams.privacy.pseudonyms import SubscriberPseudonyms, is_subject_reference
from streams.state.contract import Contract


class Outgoing(NamedTuple):
    """One record to produce (a tuple: the router makes two to twenty per event, and a frozen
    dataclass costs several times more to build)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int | None = None
    """Explicit partition (audit chains); None lets the key decide."""


@dataclass(frozen=True)
class EventHeaders:
    """The CloudEvents attributes of a provider record, read straight from its ``ce_`` headers.

    The published headers come from the ``cloudevents`` SDK's Kafka binding; a delivery reuses
    them as they are (id, source, type, time, specversion, content type) and only replaces the
    subject and adds the contract's extension attributes, which keeps the router's hot path free
    of per-delivery event construction.
    """

    headers: tuple[tuple[str, bytes], ...]
    id: str
    subject: str

    @classmethod
    def read(cls, headers: list[tuple[str, bytes]]) -> EventHeaders:
        found = dict(headers)
        missing = [name for name in _REQUIRED if name not in found]
        if missing:
            raise ValueError(f"not a CloudEvent: missing header(s) {', '.join(missing)}")
        kept = tuple((k, v) for k, v in headers if k in _PASSED_THROUGH)
        return cls(kept, found["ce_id"].decode(), found["ce_subject"].decode())


_REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject")
_PASSED_THROUGH = frozenset({"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time",
                             "content-type"})


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
        """The ``expiresat`` of what is delivered at ``routed_at`` (once per batch)."""
        return rfc3339_millis(routed_at + self.retention).encode()

    def headers(self, event: EventHeaders, pseudonym: bytes,
                expires: bytes) -> list[tuple[str, bytes]]:
        """Binary-mode headers of a delivery: the event's, its new subject, the extensions."""
        return [*event.headers, ("ce_subject", pseudonym), *self.extensions,
                ("ce_expiresat", expires)]


def redacted_key(key: bytes | None) -> bytes | None:
    """A key kept in a dead letter only if it is a subject reference or a SIREN."""
    if key is None:
        return None
    text = key.decode("utf-8", errors="replace")
    if is_subject_reference(text) or (len(text) == 9 and text.isdigit()):
        return key
    return None


def redacted_value(value: bytes | None) -> bytes | None:
    """A value kept in a dead letter unless a raw NIR hides somewhere in its bytes."""
    if value is None or contains_nir(value):
        return None
    return value


def redacted_error(error: BaseException) -> str:
    """An error's type and message, for a dead letter or a log line; the message is left out
    when it holds a raw NIR (a library may quote the value it choked on)."""
    message = f"{type(error).__name__}: {error}"
    if contains_nir(message.encode()):
        return f"{type(error).__name__} (its message held an identifier: not repeated)"
    return message


def redacted_headers(headers: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """Headers for a dead letter: a subject that is not pseudonymous, and any value holding a
    raw NIR, are removed (the header name stays, to show what was there)."""
    kept: list[dict[str, Any]] = []
    for name, value in headers:
        unsafe = (name == "ce_subject" and redacted_key(value) is None) or contains_nir(value)
        kept.append({"key": name, "value": None if unsafe else value})
    return kept
