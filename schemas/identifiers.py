"""Validation of the French identifiers that name the subject of an event.

Three identifiers travel on the bus:

* the **NIR** (*numéro d'inscription au répertoire*, the social-security number) of a person:
  13 characters plus a 2-digit control key. It is personal data: it is turned into a subject
  reference at the edge and no error message built here ever repeats it.
* the **SIREN** (9 digits) of a company and the **SIRET** (14 digits = SIREN + 5-digit NIC) of
  one of its establishments. Both are public (the Sirene register is open data), so error messages
  may quote them.

Everything here is a pure function: no I/O, no logging, so the rules can be used anywhere (HTTP
ingest, batch files, the stream router, the synthetic generators) and tested exhaustively.

NIR rules applied (deliberately lenient where INSEE itself issues unusual values, strict where a
value can only be a typing error):

* spaces (any Unicode white space, e.g. the non-breaking spaces of French typography) are removed
  and letters upper-cased, because people type ``1 84 12 76 451 089 46`` or ``2a``;
* position 1, sex: ``1`` (man) or ``2`` (woman), and ``7``/``8`` for the temporary numbers (NIA)
  some organisations assign while the person's registration is pending. ``3``/``4`` (foreigners
  being registered) are refused: they are not final identifiers and must not key a person;
* positions 4-5, month: ``01``-``12``, or the pseudo-months ``20``-``99`` INSEE uses when the
  civil-status record is incomplete. ``00`` and ``13``-``19`` are refused;
* positions 6-7, département: ``01``-``99`` (``20`` remains valid: people born in Corsica before
  1976 keep it, ``97``/``98`` start an overseas code, ``99`` means born abroad) or ``2A``/``2B``;
* commune and order number: digits, not checked further (INSEE reuses codes for large communes);
* key: ``97 - (number mod 97)`` where, for Corsica, ``2A`` counts as ``19`` and ``2B`` as ``18``.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "InvalidIdentifier",
    "complete_nir",
    "complete_siren",
    "complete_siret",
    "is_bus_subject",
    "is_luhn_valid",
    "luhn_check_digit",
    "nir_key",
    "validate_nir",
    "validate_siren",
    "validate_siret",
]

LA_POSTE_SIREN: Final = "356000000"
LA_POSTE_HEAD_OFFICE_SIRET: Final = "35600000000048"

_DIGITS: Final = re.compile(r"[0-9]+")
# sex, year, month, département (2 digits or 2A/2B), commune, order, key
_NIR_SHAPE: Final = re.compile(r"[0-9]{5}(?:[0-9]{2}|2A|2B)[0-9]{8}")
_NIR_NUMBER_SHAPE: Final = re.compile(r"[0-9]{5}(?:[0-9]{2}|2A|2B)[0-9]{6}")
_NIR_SEXES: Final = frozenset("1278")
SUBJECT_REFERENCE_SHAPE: Final = re.compile(r"sr1_[0-9a-f]{64}")
"""A person's subject reference: ``sr1_`` and the 64 hex digits of its HMAC."""
SIREN_SHAPE: Final = re.compile(r"[0-9]{9}")
_CORSICA: Final = {"2A": "19", "2B": "18"}


def is_bus_subject(value: object) -> bool:
    """Whether ``value`` has the shape of a subject on the bus's topics: a person's subject
    reference or a company's SIREN, nothing before or after (a reader keying by subject must
    not take ``sr1_<someone>`` followed by more as that someone)."""
    return isinstance(value, str) and bool(SUBJECT_REFERENCE_SHAPE.fullmatch(value)
                                           or SIREN_SHAPE.fullmatch(value))


class InvalidIdentifier(ValueError):
    """An identifier failed validation.

    ``field`` names where it came from (``subject``, ``subscriber_siret``…) so an HTTP 4xx or a
    DLQ record can point at it; ``reason`` says what is wrong without ever repeating a NIR.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvalidIdentifier], tuple[str, str]]:
        """Pickle by (field, reason) so the error survives a trip to another process."""
        return (type(self), (self.field, self.reason))


def _compact(value: object, field: str, kind: str) -> str:
    """Strip every white space and upper-case, refusing non-strings without quoting them."""
    if not isinstance(value, str):
        raise InvalidIdentifier(field, f"invalid {kind} (expected a string)")
    return "".join(value.split()).upper()


def nir_key(number13: str) -> int:
    """The control key (1-97) of a 13-character NIR number, Corsican départements included.

    Raises ``ValueError`` (never quoting the number) when it is not 13 NIR characters.
    """
    if not _NIR_NUMBER_SHAPE.fullmatch(number13):
        raise ValueError("a NIR number is 13 characters: digits, 2A or 2B in positions 6-7")
    department = number13[5:7]
    if department in _CORSICA:
        number13 = number13[:5] + _CORSICA[department] + number13[7:]
    return 97 - int(number13) % 97


def complete_nir(number13: str) -> str:
    """Append the control key to a 13-character NIR number (for generators and fixtures)."""
    return f"{number13}{nir_key(number13):02d}"


def validate_nir(value: object, field: str = "subject") -> str:
    """Return the normalised NIR (15 characters, no spaces, upper case) or raise.

    The raised :class:`InvalidIdentifier` never contains the value, nor any part of it longer
    than the 2-digit key, so it can be logged, returned to a client or written to the DLQ.
    """
    nir = _compact(value, field, "NIR")
    if len(nir) != 15:
        raise InvalidIdentifier(field, f"invalid NIR (expected 15 characters, got {len(nir)})")
    if not _NIR_SHAPE.fullmatch(nir):
        raise InvalidIdentifier(
            field, "invalid NIR (only digits expected, and 2A or 2B in positions 6-7)"
        )
    if nir[0] not in _NIR_SEXES:
        raise InvalidIdentifier(field, "invalid NIR (sex digit must be 1, 2, 7 or 8)")
    month = int(nir[3:5])
    if month == 0 or 13 <= month <= 19:
        raise InvalidIdentifier(field, "invalid NIR (month must be 01-12 or 20-99)")
    if nir[5:7] == "00":
        raise InvalidIdentifier(field, "invalid NIR (département 00 does not exist)")
    given, expected = int(nir[13:]), nir_key(nir[:13])
    if given != expected:  # neither key is quoted: the right one tells the number mod 97
        raise InvalidIdentifier(field, "invalid NIR (its control key does not match)")
    return nir


def luhn_check_digit(digits: str) -> int:
    """The digit that, appended to ``digits``, makes the whole number pass the Luhn check."""
    if not _DIGITS.fullmatch(digits):
        raise ValueError("Luhn applies to a non-empty string of digits")
    return (10 - _luhn_sum(digits + "0")) % 10


def is_luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (the SIREN and SIRET control)."""
    return bool(_DIGITS.fullmatch(digits)) and _luhn_sum(digits) == 0


def _luhn_sum(digits: str) -> int:
    """Luhn sum modulo 10: every second digit from the right is doubled (digits of it summed)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10


def complete_siren(first8: str) -> str:
    """Append the Luhn check digit to the first 8 digits of a SIREN."""
    if len(first8) != 8:
        raise ValueError("a SIREN without its check digit is 8 digits")
    return f"{first8}{luhn_check_digit(first8)}"


def complete_siret(first13: str) -> str:
    """Append the check digit to a SIREN + 4-digit NIC prefix, La Poste's rule included."""
    if len(first13) != 13 or not _DIGITS.fullmatch(first13):
        raise ValueError("a SIRET without its check digit is 13 digits")
    if first13.startswith(LA_POSTE_SIREN):
        return f"{first13}{-sum(map(int, first13)) % 5}"
    return f"{first13}{luhn_check_digit(first13)}"


def _shape_problem(value: str, length: int) -> str:
    """Describe a malformed SIREN/SIRET without quoting it."""
    if len(value) != length:
        return f"expected {length} digits, got {len(value)} characters"
    return f"expected {length} digits, got other characters"


def validate_siren(value: object, field: str = "subject") -> str:
    """Return the normalised SIREN (9 digits) or raise.

    A SIREN is public, so a well-shaped but wrong one is quoted in the error; a value of the wrong
    shape is not (it may be a NIR typed into the wrong field).
    """
    siren = _compact(value, field, "SIREN")
    if not (len(siren) == 9 and _DIGITS.fullmatch(siren)):
        raise InvalidIdentifier(field, f"invalid SIREN ({_shape_problem(siren, 9)})")
    if siren == "000000000":
        raise InvalidIdentifier(field, "invalid SIREN 000000000 (a placeholder, not a company)")
    if not is_luhn_valid(siren):
        raise InvalidIdentifier(field, f"invalid SIREN {siren} (Luhn checksum fails)")
    return siren


def validate_siret(value: object, field: str = "subscriber_siret") -> str:
    """Return the normalised SIRET (14 digits) or raise; quoted in errors only when well-shaped.

    La Poste numbers its establishments under SIREN 356000000 beyond what Luhn allows, so for it
    (except the head office, which is Luhn-valid) the rule is: the sum of the digits is a
    multiple of 5.
    """
    siret = _compact(value, field, "SIRET")
    if not (len(siret) == 14 and _DIGITS.fullmatch(siret)):
        raise InvalidIdentifier(field, f"invalid SIRET ({_shape_problem(siret, 14)})")
    if siret.startswith(LA_POSTE_SIREN) and siret != LA_POSTE_HEAD_OFFICE_SIRET:
        if sum(map(int, siret)) % 5:
            raise InvalidIdentifier(
                field, f"invalid SIRET {siret} (La Poste: digit sum not a multiple of 5)"
            )
        return siret
    if not is_luhn_valid(siret):
        raise InvalidIdentifier(field, f"invalid SIRET {siret} (Luhn checksum fails)")
    if siret[:9] == "000000000" or not is_luhn_valid(siret[:9]):
        raise InvalidIdentifier(field, f"invalid SIRET {siret} (its SIREN {siret[:9]} is invalid)")
    return siret

