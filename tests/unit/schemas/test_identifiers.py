"""NIR, SIREN and SIRET validation: rules, normalisation, and errors that never leak a NIR."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from schemas.identifiers import (
    InvalidIdentifier,
    complete_nir,
    complete_siren,
    complete_siret,
    is_luhn_valid,
    luhn_check_digit,
    nir_key,
    validate_nir,
    validate_siren,
    validate_siret,
)

EXAMPLE_NIR = "184127645108946"  # "1 84 12 76 451 089 46": key 97 - 1841276451089 mod 97 = 46


def two_digits(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n:02d}")


nir_numbers = st.builds(
    lambda sex, year, month, dept, commune, order: f"{sex}{year}{month}{dept}{commune}{order}",
    st.sampled_from("1278"),
    two_digits(0, 99),
    st.one_of(two_digits(1, 12), two_digits(20, 99)),
    st.one_of(two_digits(1, 99), st.sampled_from(["2A", "2B"])),
    st.integers(0, 999).map(lambda n: f"{n:03d}"),
    st.integers(0, 999).map(lambda n: f"{n:03d}"),
)


def reference_key(number13: str) -> int:
    """The key computed the way the brief states it: 2A is the number minus 1,000,000, 2B minus
    2,000,000 once the letters are read as "20" (i.e. 2A -> 19, 2B -> 18)."""
    offset = {"2A": 1_000_000, "2B": 2_000_000}.get(number13[5:7], 0)
    as_digits = number13[:5] + ("20" if offset else number13[5:7]) + number13[7:]
    return 97 - (int(as_digits) - offset) % 97


# --- NIR ---------------------------------------------------------------------------------------


def test_known_nir_validates_and_is_normalised() -> None:
    assert validate_nir("1 84 12 76 451 089 46") == EXAMPLE_NIR
    assert validate_nir("\u00a0184127645108946\t") == EXAMPLE_NIR  # non-breaking space, tab
    assert nir_key(EXAMPLE_NIR[:13]) == 46


def test_wrong_key_message_names_the_field_not_the_keys() -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        validate_nir("184127645108912", field="beneficiaire")
    assert str(caught.value) == "beneficiaire: invalid NIR (its control key does not match)"
    assert caught.value.field == "beneficiaire"
    assert "12" not in caught.value.reason
    assert "46" not in caught.value.reason


@given(nir_numbers)
def test_nir_built_from_valid_parts_validates(number: str) -> None:
    nir = number + f"{reference_key(number):02d}"
    assert complete_nir(number) == nir
    assert validate_nir(nir) == nir
    assert validate_nir(nir.lower()) == nir  # "2a" typed in lower case


@given(nir_numbers, st.data())
def test_any_single_digit_change_is_refused(number: str, data: st.DataObject) -> None:
    nir = complete_nir(number)
    digit_positions = [i for i, char in enumerate(nir) if char.isdigit()]
    position = data.draw(st.sampled_from(digit_positions))
    replacement = data.draw(st.sampled_from("0123456789").filter(lambda d: d != nir[position]))
    changed = nir[:position] + replacement + nir[position + 1 :]
    with pytest.raises(InvalidIdentifier):
        validate_nir(changed)


def test_corsican_keys_use_19_and_18() -> None:
    number_2a, number_2b = "180052A004123", "180052B033123"
    assert nir_key(number_2a) == 97 - int("1800519004123") % 97 == 10
    assert nir_key(number_2b) == 97 - int("1800518033123") % 97
    assert validate_nir("1 80 05 2A 004 123 10") == "180052A00412310"
    # the same digits under the pre-1976 département 20 have another key
    assert nir_key("1800520004123") == 80
    with pytest.raises(InvalidIdentifier, match="its control key does not match"):
        validate_nir("180052A00412380")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("18412764510894", "expected 15 characters, got 14"),
        ("1841276451089466", "expected 15 characters, got 16"),
        ("18412764510894X", "only digits expected"),
        ("184122C45108946", "only digits expected"),
        ("384127645108946", "sex digit must be 1, 2, 7 or 8"),
        ("184137645108946", "month must be 01-12 or 20-99"),
        ("184007645108946", "month must be 01-12 or 20-99"),
        ("184120045108946", "département 00 does not exist"),
    ],
)
def test_structural_errors_are_explained(value: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        validate_nir(value)
    assert reason in caught.value.reason
    assert value not in str(caught.value)


def test_non_string_is_refused_without_quoting() -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        validate_nir(184127645108946)
    assert "184127645108946" not in str(caught.value)
    assert "expected a string" in str(caught.value)


@given(nir_numbers, st.data())
def test_nir_errors_never_contain_the_nir(number: str, data: st.DataObject) -> None:
    nir = complete_nir(number)
    broken = data.draw(
        st.one_of(
            st.integers(0, 96)
            .filter(lambda k: k != int(nir[13:]))
            .map(lambda k: nir[:13] + f"{k:02d}"),  # wrong key
            st.just(nir[:14]),  # one character short
            st.just(nir + "7"),  # one character too many
            st.just("3" + nir[1:]),  # wrong sex digit
            st.just(nir[:3] + "13" + nir[5:]),  # impossible month
            st.just(nir[:8] + "X" + nir[9:]),  # a letter
        )
    )
    spaced = " ".join([broken[:1], broken[1:3], broken[3:5], broken[5:7], broken[7:]])
    for raw in (broken, spaced):
        with pytest.raises(InvalidIdentifier) as caught:
            validate_nir(raw)
        error = caught.value
        shown = [str(error), repr(error), error.reason, *map(str, error.args)]
        for text in shown:
            assert broken not in text
            assert raw not in text
            assert broken[:13] not in text  # nor the number without its key
            assert nir[:10] not in text
        assert error.__cause__ is None
        assert error.__context__ is None  # no chained exception quoting the value


def test_invalid_identifier_survives_pickling() -> None:
    error = InvalidIdentifier("subject", "invalid NIR (sex digit must be 1, 2, 7 or 8)")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, copy.reason, str(copy)) == (error.field, error.reason, str(error))
    assert isinstance(copy, ValueError)


def test_nir_key_refuses_malformed_numbers_without_quoting() -> None:
    with pytest.raises(ValueError, match="13 characters") as caught:
        nir_key("18412764510")
    assert "18412764510" not in str(caught.value)


# --- SIREN / SIRET -----------------------------------------------------------------------------

eight_digits = st.integers(0, 10**8 - 1).map(lambda n: f"{n:08d}")
thirteen_digits = st.integers(0, 10**13 - 1).map(lambda n: f"{n:013d}")


def single_digit_changes(value: str) -> list[str]:
    return [
        value[:i] + d + value[i + 1 :]
        for i in range(len(value))
        for d in "0123456789"
        if d != value[i]
    ]


def test_known_sirens_and_sirets() -> None:
    assert validate_siren("356 000 000") == "356000000"  # La Poste
    assert validate_siren("732829320") == "732829320"
    assert validate_siret("732 829 320 00074") == "73282932000074"
    assert validate_siret("35600000000048") == "35600000000048"  # La Poste head office: Luhn


def test_luhn_helpers_agree_with_the_textbook_algorithm() -> None:
    assert luhn_check_digit("7992739871") == 3  # the classic Luhn worked example
    assert is_luhn_valid("79927398713")
    assert not is_luhn_valid("79927398710")
    assert not is_luhn_valid("")
    assert not is_luhn_valid("12a4")


@given(eight_digits)
def test_completed_siren_validates_and_single_digit_changes_do_not(first8: str) -> None:
    assume(first8 != "00000000")
    siren = complete_siren(first8)
    assert validate_siren(siren) == siren
    for changed in single_digit_changes(siren):
        with pytest.raises(InvalidIdentifier, match="invalid SIREN"):
            validate_siren(changed)


@given(eight_digits, st.integers(0, 9999))
def test_completed_siret_validates_and_single_digit_changes_do_not(first8: str, nic: int) -> None:
    assume(not first8.startswith("3560000") and first8 != "00000000")
    siret = complete_siret(complete_siren(first8) + f"{nic:04d}")
    assert validate_siret(siret) == siret
    for changed in single_digit_changes(siret):
        if changed.startswith("356000000"):
            continue  # La Poste numbers follow another rule
        with pytest.raises(InvalidIdentifier, match="invalid SIRET"):
            validate_siret(changed)


def test_siret_luhn_valid_but_siren_invalid_is_refused() -> None:
    first13 = "1234567800001"  # 123456780 fails Luhn as a SIREN
    assert not is_luhn_valid("123456780")
    siret = complete_siret(first13)
    assert is_luhn_valid(siret)
    with pytest.raises(InvalidIdentifier, match="its SIREN 123456780 is invalid"):
        validate_siret(siret)


def test_la_poste_sirets_use_the_digit_sum_rule() -> None:
    assert not is_luhn_valid("35600000049837")  # digit sum 45: valid for La Poste only
    assert validate_siret("35600000049837") == "35600000049837"
    assert is_luhn_valid("35600000010013")  # Luhn-valid, digit sum 19: not a La Poste SIRET
    with pytest.raises(InvalidIdentifier, match="La Poste: digit sum not a multiple of 5"):
        validate_siret("35600000010013")


@given(st.integers(0, 9999))
def test_completed_la_poste_siret_validates(nic: int) -> None:
    siret = complete_siret(f"356000000{nic:04d}")
    assert sum(map(int, siret)) % 5 == 0
    assert validate_siret(siret) == siret


@pytest.mark.parametrize(
    ("validate", "value", "message"),
    [
        (
            validate_siren,
            "12345678",
            "subject: invalid SIREN (expected 9 digits, got 8 characters)",
        ),
        (validate_siren, "12345678A", "subject: invalid SIREN (expected 9 digits, got other"),
        (validate_siren, "000000000", "subject: invalid SIREN 000000000 (a placeholder"),
        (validate_siren, "123456789", "subject: invalid SIREN 123456789 (Luhn checksum fails)"),
        (validate_siret, "7328293200007", "subscriber_siret: invalid SIRET (expected 14 digits"),
        (validate_siret, "73282932000075", "subscriber_siret: invalid SIRET 73282932000075 (Luhn"),
    ],
)
def test_siren_siret_errors(validate: Callable[[str], str], value: str, message: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        validate(value)
    assert str(caught.value).startswith(message)


@given(nir_numbers)
def test_a_nir_typed_in_a_siren_or_siret_field_is_not_quoted(number: str) -> None:
    nir = complete_nir(number)
    for validate in (validate_siren, validate_siret):
        with pytest.raises(InvalidIdentifier) as caught:
            validate(nir)
        assert nir not in str(caught.value)
