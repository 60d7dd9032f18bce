"""Error messages copied into dead letters and logs never carry a raw NIR."""

from __future__ import annotations

from streams.privacy.redaction import redacted_error

NIR = "184127645108946"  # key 97 - 1841276451089 mod 97 = 46: a valid NIR


def test_an_error_quoting_a_nir_keeps_only_its_type() -> None:
    text = redacted_error(ValueError(f"cannot read {NIR!r} as a date"))
    assert NIR not in text
    assert text == "ValueError (its message held an identifier: not repeated)"


def test_an_error_without_identifier_keeps_its_message() -> None:
    assert redacted_error(KeyError("quotient_familial")) == "KeyError: 'quotient_familial'"


def test_a_number_that_is_not_a_valid_nir_is_not_taken_for_one() -> None:
    wrong_key = NIR[:13] + "47"
    assert redacted_error(ValueError(wrong_key)) == f"ValueError: {wrong_key}"
