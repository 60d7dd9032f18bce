"""What the bus may write about a record or an error it refuses: where, and what is wrong, only.

Dead letters and log lines are read by operators and kept for weeks; they must let an operator
find a bad record and fix its cause without ever copying what the record holds. So a refusal is
described by its field and its reason, as the bus's own checks word them (they never quote a
value); an error raised by a library is described by its type alone, since libraries quote the
value they choked on (a ``UnicodeDecodeError`` carries the very bytes); connection and
registry failures keep their message, which names a server and never a record's content. Every
text kept is also scanned for a NIR in any spelling, so that a reason or field path built from
hostile input cannot carry one either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from schemas.codec import DecodeError, FramingError
from schemas.nir_detection import contains_nir

MAX_TEXT = 300
"""Longest field path or reason kept: anything longer was not written by the bus's checks."""
OTHER_HEADER = "other"
"""How a dead letter names a header that is neither a CloudEvents attribute nor content-type."""

_HEADER_NAME: Final = re.compile(r"ce_[a-z0-9]{1,20}|content-type")
_WITH_MESSAGE: Final = frozenset({"aiokafka", "kafka", "httpx", "httpcore", "ssl",
                                  "schemas.registry", "streams.kafka", "streams.audit"})
"""Modules whose errors are about the infrastructure (a broker, the registry, a certificate, the
audit trail's own records, which hold references and never a NIR): their messages help an
operator and hold no provider record's content."""
_DESCRIBED: Final = (
    (FramingError, "the value is not in the Confluent wire format (magic byte, schema id)"),
    (DecodeError, "the value cannot be read with the schema it names (unknown schema id, or "
                  "not valid Avro for it)"),
)
"""Our decoding errors quote the library's error, which may hold the value: a fixed reason."""


def _clean(text: str) -> bool:
    return len(text) <= MAX_TEXT and not contains_nir(text)


def _about_infrastructure(module: str) -> bool:
    parts = module.split(".")
    return any(".".join(parts[:depth]) in _WITH_MESSAGE for depth in range(1, len(parts) + 1))


def error_cause(error: BaseException) -> tuple[str | None, str]:
    """(field, reason) of ``error`` as the bus may write them: field None when unknown."""
    field, reason = getattr(error, "field", None), getattr(error, "reason", None)
    if isinstance(field, str) and isinstance(reason, str):
        if not _clean(reason):
            reason = "its reason quoted what was refused: not repeated"
        return (field if _clean(field) else None), reason
    for kind, description in _DESCRIBED:
        if isinstance(error, kind):
            return None, description
    if isinstance(error, OSError) or _about_infrastructure(type(error).__module__):
        message = str(error)
        if _clean(message):
            return None, message
    return None, "unexpected error (its message is not repeated: it may quote the input)"


def redacted_error(error: BaseException) -> str:
    """An error as a dead letter or a log line may say it: its type, field and reason."""
    field, reason = error_cause(error)
    where = f"{field}: " if field else ""
    return f"{type(error).__name__}: {where}{reason}"


def header_names(headers: Iterable[tuple[str, object]]) -> list[str]:
    """The names of a record's headers, as a dead letter keeps them: a CloudEvents attribute
    or ``content-type`` by its name, anything else (free text a writer chose) as ``other``."""
    return [name if _HEADER_NAME.fullmatch(name) and not contains_nir(name) else OTHER_HEADER
            for name, _ in headers]
