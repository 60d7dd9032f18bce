"""What may be kept of a record the bus refuses: nothing that could be a raw NIR.

A dead letter keeps enough to find and replay what went wrong (origin, a pseudonymous key, the
bytes when they are clean, the error's type and message) and loses whatever could identify a
person: a key that is neither a subject reference nor a SIREN, a value or header in which a NIR
hides, an error message that quotes one (libraries quote the value they choked on). The same
redaction serves dead letters and log lines, before anything is written.
"""

from __future__ import annotations

from typing import Any

from schemas.nir_detection import contains_nir
from streams.privacy.pseudonyms import is_subject_reference


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
