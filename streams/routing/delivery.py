"""What a subscriber receives: the CloudEvent of a delivery, its headers and its expiry.

A delivery is a CloudEvent in the Kafka binary mode: the original event id, source, type and
time; the subscriber's pseudonym (or the company's SIREN) as subject; the contract, purpose,
legal basis and expiry as extension attributes; the value is the event's data projected on the
contract's fields, Avro-encoded with the contract's delivery schema. The key is the pseudonym,
so one person's changes stay in order for the subscriber.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.codec import rfc3339_millis
from streams.privacy.pseudonyms import SubscriberPseudonyms
from streams.state.contract import Contract


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


