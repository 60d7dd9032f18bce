"""What dead letters and log lines say of an error or a record: where and what, never the input."""

from __future__ import annotations

import httpx
import pytest

from schemas.codec import DecodeError, FramingError, ValidationError
from schemas.identifiers import InvalidIdentifier, complete_nir
from streams.audit.heads import AuditChainError
from streams.privacy.redaction import OTHER_HEADER, error_cause, header_names, redacted_error
from streams.routing.records import UnroutableRecord

NIR = complete_nir("1841276451089")
SPACED = " ".join((NIR[0], NIR[1:3], NIR[3:5], NIR[5:7], NIR[7:10], NIR[10:13], NIR[13:]))


@pytest.mark.parametrize("error", [
    ValueError(f"cannot read {NIR!r} as a date"),
    KeyError("Dupont"),
    UnicodeDecodeError("utf-8", b"Jean Dupont \xff", 12, 13, "invalid start byte"),
    TypeError(f"unhashable: {SPACED}"),
], ids=["nir", "key", "unicode", "spaced"])
def test_a_library_error_is_told_by_its_type_alone(error: Exception) -> None:
    """Libraries quote the value they choke on: none of it is repeated."""
    text = redacted_error(error)
    assert text.startswith(f"{type(error).__name__}: unexpected error")
    for secret in (NIR, SPACED, "Dupont", "Jean"):
        assert secret not in text


def test_a_refusal_keeps_its_field_and_reason() -> None:
    error = UnroutableRecord("ce_source", "does not name the provider of its topic")
    assert error_cause(error) == ("ce_source", "does not name the provider of its topic")
    assert redacted_error(error) == ("UnroutableRecord: ce_source: does not name the provider of "
                                     "its topic")
    assert redacted_error(InvalidIdentifier("subject", "invalid NIR (bad key)")) == (
        "InvalidIdentifier: subject: invalid NIR (bad key)")


def test_a_field_or_reason_holding_a_nir_is_not_repeated() -> None:
    """A field path built from a hostile key, or a reason quoting input, loses that part."""
    field, reason = error_cause(ValidationError(f"data.{SPACED}", "unknown field"))
    assert field is None
    assert reason == "unknown field"
    field, reason = error_cause(ValidationError("data.ville", f"{NIR} is not a town"))
    assert field == "data.ville"
    assert NIR not in reason


def test_decoding_errors_get_a_fixed_reason_without_the_library_message() -> None:
    quoted = DecodeError(f"not a valid Avro record for this schema: ValueError({NIR!r})")
    assert NIR not in redacted_error(quoted)
    assert "cannot be read with the schema it names" in redacted_error(quoted)
    assert "Confluent wire format" in redacted_error(FramingError("magic byte 0x07"))


def test_an_infrastructure_error_keeps_its_message() -> None:
    """A registry or broker failure names a server, which an operator needs."""
    error = httpx.ConnectError("connection refused by registry:8081")
    assert redacted_error(error) == "ConnectError: connection refused by registry:8081"
    assert redacted_error(OSError("disk full")) == "OSError: disk full"


def test_header_names_keep_cloudevents_attributes_and_hide_the_rest() -> None:
    headers: list[tuple[str, bytes | None]] = [
        ("ce_id", b"x"), ("content-type", None), (f"ce_{NIR}", b"x"), ("Dupont Jean", b"x"),
        ("x-custom", b"x")]
    assert header_names(headers) == ["ce_id", "content-type", OTHER_HEADER, OTHER_HEADER,
                                     OTHER_HEADER]


def test_an_audit_trail_failure_keeps_its_message() -> None:
    """A worker that cannot read its chain's head says which chain, for the operator."""
    error = AuditChainError("cannot read the head of audit chain 3")
    assert redacted_error(error) == "AuditChainError: cannot read the head of audit chain 3"
