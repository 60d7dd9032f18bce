"""Subject lists: the persons (or companies) an operator names in a file rather than as arguments.

A commune enrolling its 30,000 families cannot type them as arguments, and should not type even
a few real NIRs: arguments stay in the shell's history and show in ``ps`` while the command runs.
A subject list holds one NIR (or SIREN) per line, or is a spreadsheet's CSV export with a column
named ``nir`` (any case; other columns ignored), separated by commas or by the semicolons French
spreadsheets write, as Excel saves it: a UTF-8 byte-order mark, CRLF line endings, quoted cells.
The header line tells the two apart: a line with a ``nir`` cell is a CSV header; a first line
with a separator but no such cell is a CSV that lacks the column, refused as such.

The whole file is checked before anything is written. A command that enrolled half a file and
stopped at a typing error would leave the operator to work out which half; so every problem is
collected (the first :data:`MAX_PROBLEMS` shown, all counted), and nothing is written unless
there is none. A problem names its line and what is wrong, never the value: a refused line is
most often a NIR with a typo, personal data all the same. Not even a SIREN is quoted here (the
identifier rules would: SIRENs are public), since a 9-digit line may be part of a NIR.

Sizes are bounded (:data:`MAX_FILE_BYTES`, :data:`MAX_LINE_CHARS`, :data:`MAX_SUBJECTS`) so
that a wrong file, a database dump or a binary, is refused rather than read whole into memory,
and a right one fits in the memory of the machine that writes it. Nothing here needs a
secret or a broker: a file is judged before either is asked anything.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from schemas.identifiers import InvalidIdentifier, validate_nir, validate_siren
from streams.privacy.pseudonyms import SubjectKind

MAX_FILE_BYTES: Final = 64 * 1024 * 1024
"""Largest subject file read: about four million NIRs one per line, or some 300,000 rows of a
spreadsheet export; anything larger is not a list of subjects and is refused unread."""
MAX_LINE_CHARS: Final = 16 * 1024
"""Longest line accepted, line ending excluded: a NIR takes 15 characters and a spreadsheet row
a few hundred; a longer line is a binary or a dump, refused by its number."""
MAX_SUBJECTS: Final = 1_000_000
"""Most subjects one file may name. A command holds every subject, its reference and its write
in memory until the one fence round: a million took 1.2 GB and 80 s to enrol on the local stack,
so a 64 MiB list of bare NIRs, four million of them, would need some 5 GB, and a command killed
part-way leaves writes behind no fence. Larger populations are enrolled a file at a time."""
MAX_PROBLEMS: Final = 20
"""Problems shown of a refused file (all are counted): a binary file has one on every line."""
NIR_COLUMN: Final = "nir"
"""The header cell naming the column of subjects in a CSV file, compared case-insensitively."""
STDIN: Final = "-"
"""The file name that means standard input."""

_DELIMITERS: Final = (",", ";")
_UTF8_BOM: Final = b"\xef\xbb\xbf"
_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")
_UNDECODED: Final = re.compile("[\udc80-\udcff]")
"""What ``surrogateescape`` makes of bytes that are not UTF-8."""
_SAVE_AS_UTF8: Final = "save it as UTF-8: a spreadsheet's “CSV UTF-8” format"


@dataclass(frozen=True)
class GivenSubject:
    """An identifier as an operator gave it (kept in memory only), and where it was given:
    ``subject #3`` for the third argument, ``line 17`` for a file's line. Problems name the
    place, never the text."""

    text: str
    place: str


class SubjectListRefused(ValueError):
    """A subject file the command will not act on: nothing is written.

    ``problems`` holds the first :data:`MAX_PROBLEMS` of ``total`` problems, each naming its line
    (``line 17: …``) or, when ``whole_file``, what is wrong with the file itself; never a value.
    """

    def __init__(self, problems: list[str], total: int, whole_file: bool = False) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.total = total
        self.whole_file = whole_file

    @classmethod
    def because(cls, reason: str) -> SubjectListRefused:
        """The file as a whole refused (missing, too large, no ``nir`` column…)."""
        return cls([reason], 1, whole_file=True)


class _Problems:
    """Every problem counted, the first :data:`MAX_PROBLEMS` kept, in line order."""

    def __init__(self) -> None:
        self.kept: list[str] = []
        self.total = 0

    def add(self, line: int, reason: str) -> None:
        self.total += 1
        if len(self.kept) < MAX_PROBLEMS:
            self.kept.append(f"line {line}: {reason}")


def given_kind(text: str) -> SubjectKind:
    """A company when the text is 9 digits once white space is removed (a SIREN), otherwise a
    person (a NIR): one rule for arguments and files."""
    compact = "".join(text.split())
    return "company" if len(compact) == 9 and compact.isdigit() else "person"


def identifier_problem(text: str) -> str | None:
    """What is wrong with an identifier (the identifier rules' reason), or None when valid.

    The value is taken out of the reason wherever the rules quote it (a SIREN): see the module
    docstring for why a file's problems quote no value at all.
    """
    try:
        if given_kind(text) == "company":
            validate_siren(text)
        else:
            validate_nir(text)
    except InvalidIdentifier as exc:
        compact = "".join(text.split()).upper()
        return " ".join(exc.reason.replace(compact, " ").split()) if compact else exc.reason
    return None


def read_subject_list(source: str) -> list[GivenSubject]:
    """The subjects a file names (``-``: standard input), in file order, repeats included;
    :class:`SubjectListRefused` unless every line is valid."""
    return parse_subjects(load(source))


def load(source: str) -> bytes:
    """The bytes of ``source`` (a path, or ``-`` for standard input), at most
    :data:`MAX_FILE_BYTES`. Anything that is not a regular file is read too, within that bound,
    so that ``--from-file <(cut -d';' -f2 export.csv)`` works; only a directory is refused
    before reading."""
    if source == STDIN:
        return _bounded(sys.stdin.buffer)
    path = Path(source)
    if path.is_dir():
        raise SubjectListRefused.because("a directory, not a file")
    try:
        with path.open("rb") as file:
            return _bounded(file)
    except FileNotFoundError:
        raise SubjectListRefused.because("no such file") from None
    except OSError as exc:
        raise SubjectListRefused.because(
            f"cannot be read ({exc.strerror or type(exc).__name__})") from None


def _bounded(file: BinaryIO) -> bytes:
    data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise SubjectListRefused.because(
            f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB: split it into several files")
    return data


def parse_subjects(data: bytes) -> list[GivenSubject]:
    """The subjects of a file's content: see the module docstring for the two forms accepted."""
    if data.startswith(_UTF16_BOMS):
        raise SubjectListRefused.because(f"UTF-16 text, not UTF-8 ({_SAVE_AS_UTF8})")
    problems = _Problems()
    lines = _Lines(data.removeprefix(_UTF8_BOM).decode("utf-8", "surrogateescape"), problems)
    header = next((line for line in lines if line.strip()), None)
    if problems.total:  # the first line cannot be read: nor can the file's form be told
        raise SubjectListRefused(problems.kept, problems.total)
    subjects: list[GivenSubject] = []
    if header is not None:
        column = _nir_column(header, lines.number)
        if column is None:
            _read_plain(header, lines, subjects, problems)
        else:
            _read_csv(lines, *column, subjects, problems)
    if problems.total:
        raise SubjectListRefused(problems.kept, problems.total)
    if not subjects:
        raise SubjectListRefused.because("names no subject (only blank lines, or a header)")
    return subjects


class _Lines(Iterator[str]):
    """A text's physical lines, ending kept (as :mod:`csv` wants them), each checked as it is
    read: a line that cannot hold a subject is noted by its number and read as blank.
    ``number`` is the number of the last line read."""

    def __init__(self, text: str, problems: _Problems) -> None:
        self._text = io.StringIO(text, newline="")  # newline="": \r\n, \r and \n all end a line
        self._problems = problems
        self.number = 0

    def __next__(self) -> str:
        line = next(self._text)
        self.number += 1
        reason = _line_problem(line.rstrip("\r\n"))
        if reason is None:
            return line
        self._problems.add(self.number, reason)
        return "\n"


def _line_problem(content: str) -> str | None:
    if "\x00" in content:
        return "a NUL byte: not a text file"
    if _UNDECODED.search(content):
        return f"not UTF-8 text ({_SAVE_AS_UTF8})"
    if len(content) > MAX_LINE_CHARS:
        return f"longer than {MAX_LINE_CHARS:,} characters"
    return None


def header_delimiter(header: str, column: str, delimiters: tuple[str, ...]
                     ) -> tuple[str, list[str]] | None:
    """The first of ``delimiters`` under which the header line has a cell named ``column``
    (any case), with its cells casefolded; None when none does. A spreadsheet's header says
    which separator its export used: French ones write semicolons, others commas or tabs."""
    for delimiter in delimiters:
        cells = [cell.strip().casefold() for cell in next(csv.reader([header],
                                                                     delimiter=delimiter))]
        if column in cells:
            return delimiter, cells
    return None


def _nir_column(header: str, line: int) -> tuple[str, int, int] | None:
    """For a CSV header: its delimiter, the ``nir`` column's index and the number of columns;
    None for a line of a plain list."""
    found = header_delimiter(header, NIR_COLUMN, _DELIMITERS)
    if found is not None:
        delimiter, cells = found
        if cells.count(NIR_COLUMN) > 1:
            raise SubjectListRefused.because(f"line {line}: two columns are named nir")
        return delimiter, cells.index(NIR_COLUMN), len(cells)
    if any(delimiter in header for delimiter in _DELIMITERS):
        raise SubjectListRefused.because(
            f"line {line}: a CSV header without a column named nir (the column of NIRs must "
            "be named so)")
    return None


def _read_plain(first: str, lines: _Lines, subjects: list[GivenSubject],
                problems: _Problems) -> None:
    """One identifier per line, blank lines skipped."""
    _take(first.strip(), lines.number, subjects, problems)
    for line in lines:
        if line.strip():
            _take(line.strip(), lines.number, subjects, problems)


def _read_csv(lines: _Lines, delimiter: str, column: int, width: int,
              subjects: list[GivenSubject], problems: _Problems) -> None:
    """The ``nir`` cell of every row after the header; rows of blank cells (a spreadsheet's
    empty rows) skipped, rows of data without a NIR refused: someone would be left out."""
    rows = csv.reader(lines, delimiter=delimiter)
    try:
        for row in rows:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= column:
                problems.add(lines.number, f"no nir cell (the row has {len(row)} of the "
                                           f"header's {width} columns)")
            elif not row[column].strip():
                problems.add(lines.number, "the nir cell is empty")
            else:
                _take(row[column].strip(), lines.number, subjects, problems)
    except csv.Error:  # its messages quote no value, but say nothing an operator can act on
        problems.add(lines.number, "not readable as CSV (an unbalanced quote?)")


def _take(text: str, line: int, subjects: list[GivenSubject], problems: _Problems) -> None:
    reason = identifier_problem(text)
    if reason is not None:
        problems.add(line, reason)
    elif len(subjects) < MAX_SUBJECTS:
        subjects.append(GivenSubject(text, f"line {line}"))
    else:
        raise SubjectListRefused.because(
            f"names more than {MAX_SUBJECTS:,} subjects (line {line}): split it into several "
            "files, each written and fenced on its own")
