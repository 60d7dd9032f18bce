"""Finding a NIR hidden in free text: every string the bus accepts or writes is scanned with it.

The edge turns the subject's NIR into a reference, but a careless or hostile party can put a NIR
anywhere else: an event id, a free-text field, a consent's evidence, a contract's purpose, a
header. This module says whether a text holds one, in the spellings people use, so that callers
refuse it (naming the field, never the value) before it reaches a topic.

What counts as a NIR here:

* its characters as INSEE groups them (``1 84 12 76 451 089 46``), glued together or split by
  spaces (any Unicode white space, non-breaking and narrow ones included), dots, slashes,
  underscores or hyphens, one to three of them between two groups; a group may also be split
  where people split it, between the 13-character number and its key;
* the 13 characters of the number, alone or followed by any two for its key (a wrong key, a
  typo, still leaves the person named): the sex digit (1, 2, 7, 8), the month (01-12 or the
  pseudo-months 20-99) and the département (01-99, 2A, 2B, either case) must be plausible;
* standing alone: not part of a longer run of digits (a SIRET, an IBAN, a telephone number
  are runs of their own), nor glued inside a long hexadecimal run (hashes, UUIDs, ``sr1_``/
  ``ps1_``/``ps2_`` references, which the bus generates and callers do not scan anyway).

Everything is pure (no I/O, no logging). The router calls :func:`contains_nir` on every string
of every routed event, so the common case costs one length test or one regular-expression scan
that finds no run of digits long enough; only such runs are split and checked.
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping
from typing import Final

__all__ = ["KEY_MARKER", "MAX_DEPTH", "TooDeep", "contains_nir", "may_hold_nir", "nir_locations"]

MAX_DEPTH: Final = 64
"""Deepest nesting :func:`nir_locations` walks; the catalog's schemas nest a few levels."""
KEY_MARKER: Final = "<key>"
"""Stands for a mapping key in a path, so that a key holding a NIR is never repeated."""

_SHORTEST: Final = 13
_LONGEST: Final = 15
_HASH_RUN: Final = 32
"""Shortest hexadecimal run taken for a hash (an MD5 or a UUID without its hyphens); a shorter
one glued to digits is text a provider wrote, and is scanned like the rest."""
_BOUNDARIES: Final = frozenset({1, 3, 5, 7, 10, 13})
"""Where INSEE's grouping splits a NIR: sex, year, month, département, commune, order, key."""
_SEPARATORS: Final = r"[\s._/-]"
_PREFILTER: Final = re.compile(r"[0-9][0-9ABab\s._/-]{12}")
"""Thirteen characters a NIR's spelling is made of, from a digit on: one character class
repeated, which the regular-expression engine scans fast; most texts fail it."""
_RUN: Final = re.compile(rf"[0-9](?:{_SEPARATORS}{{0,3}}[0-9]|(?<=2)[ABab]){{12,}}")
"""Runs of at least 13 NIR characters, joined by at most three separators, ``A``/``B`` only
right after a ``2`` (Corsica)."""
_UUID: Final = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
"""An event id's usual form: its digits never line up into a NIR under the rules above."""
_GROUP: Final = re.compile(r"[0-9ABab]+")
_SHAPE: Final = re.compile(r"[1278][0-9]{2}(?:0[1-9]|1[0-2]|[2-9][0-9])"
                           r"(?:0[1-9]|[1-9][0-9]|2[AB])[0-9]{6}(?:[0-9]{2})?")
_KEYED_NUMBERS: Final = (10**14, 10**15)
"""Integers of 15 digits: the only numbers that can be a NIR with its key."""
_HEX: Final = frozenset("0123456789abcdefABCDEF-")
_HEX_LETTERS: Final = frozenset("abcdefABCDEF")
_UTF16_HINT: Final = re.compile(rb"(?:[0-9ABab]\x00(?:(?![0-9]\x00)..){0,3}){12}[0-9]\x00",
                                re.DOTALL)
"""Thirteen NIR characters in UTF-16 (little-endian, or big-endian one byte further)."""


_ENCODED_PREFILTER: Final = re.compile(rb"[0-9][0-9ABab\s\x00\x1c-\x1f._/\x80-\xff-]{12}")
""":data:`_PREFILTER` for encoded text: any byte of a non-ASCII character (a non-breaking space
is two bytes, a narrow one three) and NUL (UTF-16) may stand between two groups, so that a run
of encoded bytes is never shorter than the run of characters it encodes."""


class TooDeep(ValueError):
    """A value nests deeper than :data:`MAX_DEPTH`; ``field`` is where the walk stopped."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field}: nested deeper than {MAX_DEPTH} levels")
        self.field = field
        self.reason = f"nested deeper than {MAX_DEPTH} levels"

    def __reduce__(self) -> tuple[type[TooDeep], tuple[str]]:
        """Pickle by field, as the other refusals do."""
        return (type(self), (self.field,))


def contains_nir(data: str | bytes) -> bool:
    """Whether ``data`` holds a NIR in any usual spelling (see the module docstring).

    Bytes are read as UTF-8 and, when they look like it, as UTF-16 in either byte order.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        return _bytes_hold_nir(bytes(data))
    if len(data) < _SHORTEST or _PREFILTER.search(data) is None or _UUID.fullmatch(data):
        return False
    return any(_run_holds_nir(data, run) for run in _RUN.finditer(data))


def may_hold_nir(encoded: bytes) -> bool:
    """Whether any text encoded in ``encoded`` (UTF-8 or UTF-16 strings, as in an Avro record)
    could hold a NIR: False is certain, True only means "look closer".

    One regular-expression scan of the raw bytes, so that a caller routing thousands of events
    a second walks a decoded record's strings only when its bytes hold a run long enough. It
    says nothing of numbers encoded in binary (an Avro long): callers check those apart.
    """
    return _ENCODED_PREFILTER.search(encoded) is not None


def _bytes_hold_nir(data: bytes) -> bool:
    """UTF-8 first; then UTF-16 read from both byte offsets, covering both byte orders."""
    if len(data) < _SHORTEST:
        return False
    if contains_nir(data.decode("utf-8", errors="replace")):
        return True
    if _UTF16_HINT.search(data) is None:
        return False
    return any(contains_nir(data[offset:len(data) - (len(data) - offset) % 2]
                            .decode("utf-16-le", errors="replace")) for offset in (0, 1))


def _run_holds_nir(text: str, run: re.Match[str]) -> bool:
    """Whether whole groups of the run, split where INSEE splits, form a NIR.

    The run as a whole may be split anywhere; a part of it only at INSEE's boundaries, so that
    four-digit blocks (IBANs) or pairs (telephone numbers) never line up into one.
    ``usable`` leaves out the groups glued inside a hash.
    """
    groups = [(g.start(), g.group()) for g in _GROUP.finditer(run.group())]
    usable = [not _inside_hex(text, run.start() + start, run.start() + start + len(group))
              for start, group in groups]
    for first in range(len(groups)):
        compact, cuts = "", set()
        for last in range(first, len(groups)):
            if not usable[last]:
                break
            if compact:
                cuts.add(len(compact))
            compact += groups[last][1]
            if len(compact) > _LONGEST:
                break
            whole = first == 0 and last == len(groups) - 1
            if (whole or cuts <= _BOUNDARIES) and _is_nir(compact.upper()):
                return True
    return False


def _inside_hex(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is glued to hex letters within a hexadecimal run (a hash, or a
    UUID, whose hyphens the run spans)."""
    glued = (start > 0 and text[start - 1] in _HEX_LETTERS) or (
        end < len(text) and text[end] in _HEX_LETTERS)
    if not glued:
        return False
    while start > 0 and text[start - 1] in _HEX:
        start -= 1
    while end < len(text) and text[end] in _HEX:
        end += 1
    return end - start >= _HASH_RUN


def _is_nir(compact: str) -> bool:
    """A plausible 13-character NIR number, with or without two more characters for its key.

    The key is not required to validate: a NIR typed with a wrong key, or followed by any two
    digits (an age, a telephone number), still names the person by its first 13 characters.
    """
    return len(compact) in (_SHORTEST, _LONGEST) and _SHAPE.fullmatch(compact) is not None


def nir_locations(value: object, *, skip: Container[str] = frozenset(),
                  path: str = "") -> list[str]:
    """Dotted paths of every string (or bytes) in ``value`` holding a NIR, in document order.

    ``value`` is JSON-like: mappings, lists and tuples, strings, bytes, numbers; an integer
    counts when it is a plausible 15-digit NIR (a NIR typed as a number; 13-digit integers are
    left alone, as epoch milliseconds are that long). List items are numbered
    (``data.enfants.2.prenom``); a mapping key holding a NIR is reported as its parent path
    plus :data:`KEY_MARKER`, never by itself. A path in ``skip`` is not scanned;
    list items are matched there by ``*`` too (``data.sites.*.siret``), as
    :func:`schemas.constraints.company_identifier_paths` names them. Raises :class:`TooDeep`
    beyond :data:`MAX_DEPTH` levels instead of recursing.
    """
    found: list[str] = []
    _walk(value, path, path, skip, 0, found)
    return found


def _walk(value: object, path: str, pattern: str, skip: Container[str], depth: int,
          found: list[str]) -> None:
    """Collect paths into ``found``; ``pattern`` is ``path`` with ``*`` for list indices."""
    if depth > MAX_DEPTH:
        raise TooDeep(path or "(root)")
    if (path and path in skip) or (pattern != path and pattern in skip):
        return
    if isinstance(value, str | bytes):
        if contains_nir(value):
            found.append(path or "(root)")
    elif isinstance(value, int) and _KEYED_NUMBERS[0] <= value < _KEYED_NUMBERS[1]:
        if _is_nir(str(value)):
            found.append(path or "(root)")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str | bytes) and contains_nir(key):
                found.append(_child(path, KEY_MARKER))
            else:
                _walk(item, _child(path, str(key)), _child(pattern, str(key)), skip,
                      depth + 1, found)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _walk(item, _child(path, str(index)), _child(pattern, "*"), skip, depth + 1, found)


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
