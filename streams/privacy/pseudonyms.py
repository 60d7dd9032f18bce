"""Subject references and pairwise pseudonyms: no raw NIR on any topic, no join across subscribers.

Two keyed transformations, both HMAC-SHA256, under two secrets held by different components
(:mod:`streams.privacy.secret`):

1. **Subject reference** (at the edge, once per published event), under the subject secret. A
   person's NIR becomes ``sr1_`` + 64 lowercase hex characters of
   ``HMAC(subject_secret, "circulation/subject/v1/" + NIR)``. It is stable, so the bus can key
   topics, tables and consents by it, and it cannot be reversed or recomputed without the secret
   (a NIR has too little entropy for an unkeyed hash). A company's SIREN is public and passes
   through unchanged.
2. **Pairwise pseudonym** (per delivery), under the pseudonym secret. Subscriber ``s`` receives
   ``ps2_`` + hex of ``HMAC(k_s, subject_reference)`` with
   ``k_s = HMAC(pseudonym_secret, "circulation/pseudonym/v2/" + s)``, so two administrations
   holding deliveries about the same person hold different pseudonyms and cannot join on them
   (FranceConnect's pairwise ``sub``), while each one sees a stable value. A provider holds the
   subject secret only, so it cannot compute them either.

The prefixes version the scheme: ``ps1_`` pseudonyms were keyed by the single secret of earlier
releases, which every provider held; ``ps2_`` ones come from the pseudonym secret alone.

A secret arrives as a pydantic ``SecretStr`` and is never stored in clear: only prepared HMAC
objects are kept, the reprs show no key material, and these objects cannot be pickled.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final, Literal

from pydantic import SecretStr

from schemas.identifiers import (
    SIREN_SHAPE,
    SUBJECT_REFERENCE_SHAPE,
    InvalidIdentifier,
    validate_nir,
    validate_siren,
)

__all__ = [
    "MIN_SECRET_BYTES",
    "PSEUDONYM_PREFIX",
    "SUBJECT_REFERENCE_PREFIX",
    "Pseudonymiser",
    "SubjectKind",
    "SubjectReferences",
    "SubscriberPseudonyms",
    "subject_kind",
]

SubjectKind = Literal["person", "company"]

SUBJECT_REFERENCE_PREFIX: Final = "sr1_"
PSEUDONYM_PREFIX: Final = "ps2_"
MIN_SECRET_BYTES: Final = 32

_SUBJECT_DOMAIN: Final = b"circulation/subject/v1/"
_PSEUDONYM_DOMAIN: Final = b"circulation/pseudonym/v2/"
_REFERENCE_SHAPE: Final = SUBJECT_REFERENCE_SHAPE
_SIREN_SHAPE: Final = SIREN_SHAPE
_VARIANT: Final = {digit: "89ab"[int(digit, 16) & 0x3] for digit in "0123456789abcdef"}
"""The RFC 9562 variant digit (10xx in binary) keeping a hex digit's two low bits."""


def _secret_key(secret: SecretStr) -> bytes:
    """The key bytes, refusing a plain ``str`` (it would leak in reprs) or a short secret.

    How guessable a configured secret is gets judged where it is read
    (:mod:`streams.privacy.secret`); here only what no caller may get wrong.
    """
    if not isinstance(secret, SecretStr):
        raise TypeError("a secret must be a pydantic SecretStr, never a plain string")
    key = secret.get_secret_value().encode("utf-8")
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"a secret must be at least {MIN_SECRET_BYTES} bytes long")
    return key


def subject_kind(subject: object, field: str = "subject") -> SubjectKind:
    """Tell a person's subject reference from a company's SIREN, as found on bus topics.

    Anything else (a raw NIR above all) is refused, without quoting it: a raw identifier on a
    topic is a bug upstream that must reach the DLQ, not be pseudonymised as if nothing happened.
    """
    if isinstance(subject, str):
        if _REFERENCE_SHAPE.fullmatch(subject):
            return "person"
        if _SIREN_SHAPE.fullmatch(subject):
            return "company"
    raise InvalidIdentifier(field, "invalid subject (expected a subject reference or a SIREN)")


class SubjectReferences:
    """Turns the identifier a provider published into the subject reference used on the bus."""

    __slots__ = ("_mac",)

    def __init__(self, secret: SecretStr) -> None:
        self._mac = hmac.new(_secret_key(secret), _SUBJECT_DOMAIN, hashlib.sha256)

    def __repr__(self) -> str:
        return "SubjectReferences(secret=SecretStr('**********'))"

    def for_person(self, nir: str, field: str = "subject") -> str:
        """Validate a NIR and return its subject reference (``sr1_`` + 64 hex)."""
        mac = self._mac.copy()
        mac.update(validate_nir(nir, field).encode("ascii"))
        return SUBJECT_REFERENCE_PREFIX + mac.hexdigest()

    def for_company(self, siren: str, field: str = "subject") -> str:
        """Validate a SIREN and return it unchanged: company identifiers are public."""
        return validate_siren(siren, field)

    def reference(self, subject: str, kind: SubjectKind, field: str = "subject") -> str:
        """The subject reference for a subject of the kind its dataset declares."""
        if kind == "person":
            return self.for_person(subject, field)
        if kind == "company":
            return self.for_company(subject, field)
        raise ValueError(f"unknown subject kind {kind!r}")


class SubscriberPseudonyms:
    """One subscriber's pseudonym function, its key prepared once (hot path: copy, update)."""

    __slots__ = ("_mac", "subscriber_id")

    def __init__(self, subscriber_id: str, key: bytes) -> None:
        self.subscriber_id = subscriber_id
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return f"SubscriberPseudonyms(subscriber_id={self.subscriber_id!r})"

    def pseudonym(self, subject: str) -> str:
        """What this subscriber sees as the subject: its own pseudonym, or the SIREN as is."""
        if isinstance(subject, str) and _REFERENCE_SHAPE.fullmatch(subject):
            mac = self._mac.copy()
            mac.update(subject.encode("ascii"))
            return PSEUDONYM_PREFIX + mac.hexdigest()
        subject_kind(subject)  # a SIREN passes, anything else raises
        return subject

    def event_id(self, source: str, event_id: str) -> str:
        """This subscriber's own id for a provider's event, as a UUID.

        Stable, so a replayed event keeps its id and the subscriber still deduplicates; different
        for every subscriber, so two administrations cannot join their deliveries on it (the
        provider's id would be an exact join key beside their unlinkable pseudonyms). Its input
        starts with a zero byte, which no subject reference does: it never equals a pseudonym's.
        """
        mac = self._mac.copy()
        mac.update(b"\x00event\x00%s\x00%s" % (source.encode(), event_id.encode()))
        h = mac.hexdigest()
        # RFC 9562 layout: version 8 ("custom") in the 13th digit, the variant in the 17th
        return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


class Pseudonymiser:
    """Derives and caches each subscriber's pseudonym key from the pseudonym secret."""

    __slots__ = ("_master", "_subscribers")

    def __init__(self, secret: SecretStr) -> None:
        self._master = hmac.new(_secret_key(secret), _PSEUDONYM_DOMAIN, hashlib.sha256)
        self._subscribers: dict[str, SubscriberPseudonyms] = {}

    def __repr__(self) -> str:
        return f"Pseudonymiser(subscribers={len(self._subscribers)})"

    def for_subscriber(self, subscriber_id: str) -> SubscriberPseudonyms:
        """The pseudonym function of one subscriber (derived once, then reused)."""
        prepared = self._subscribers.get(subscriber_id)
        if prepared is None:
            if not isinstance(subscriber_id, str) or not subscriber_id.strip():
                raise ValueError("a subscriber id is a non-empty string")
            if subscriber_id != subscriber_id.strip():
                raise ValueError(f"subscriber id {subscriber_id!r} has surrounding white space")
            mac = self._master.copy()
            mac.update(subscriber_id.encode("utf-8"))
            prepared = SubscriberPseudonyms(subscriber_id, mac.digest())
            self._subscribers[subscriber_id] = prepared
        return prepared

    def pseudonym(self, subscriber_id: str, subject: str) -> str:
        """Shortcut for ``for_subscriber(subscriber_id).pseudonym(subject)``."""
        return self.for_subscriber(subscriber_id).pseudonym(subject)
