"""Subject files: one NIR (or SIREN) per line, or a spreadsheet's CSV export with a nir column,
checked whole, every problem named by its line and never by its value."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.nir_detection import contains_nir
from streams.dev.synthetic import companies, people
from streams.state import subject_lists
from streams.state.subject_lists import (
    MAX_FILE_BYTES,
    MAX_LINE_CHARS,
    MAX_PROBLEMS,
    GivenSubject,
    SubjectListRefused,
    load,
    parse_subjects,
    read_subject_list,
)

NIRS = [person.nir for person in people(20260901, 5)]
SIREN = companies(20260901, 1)[0]
BAD_KEY = NIRS[0][:13] + f"{(int(NIRS[0][13:]) % 97) + 1:02d}"
"""A NIR whose control key is wrong: what a typing error gives."""


def refused(data: bytes) -> SubjectListRefused:
    with pytest.raises(SubjectListRefused) as caught:
        parse_subjects(data)
    return caught.value


def texts(subjects: list[GivenSubject]) -> list[str]:
    return [subject.text for subject in subjects]


def test_a_plain_file_holds_one_identifier_a_line_and_blank_lines_are_skipped() -> None:
    data = f"{NIRS[0]}\n\n   \n{SIREN}\n1 {NIRS[1][1:3]} {NIRS[1][3:]}\n".encode()
    subjects = parse_subjects(data)
    assert texts(subjects) == [NIRS[0], SIREN, f"1 {NIRS[1][1:3]} {NIRS[1][3:]}"]
    assert [subject.place for subject in subjects] == ["line 1", "line 4", "line 5"]


@pytest.mark.parametrize("delimiter", [",", ";"])
@pytest.mark.parametrize("header", ["nir", "NIR", "Nir", " nir "])
def test_a_csv_file_is_read_by_its_nir_column_whatever_the_case_and_separator(
        delimiter: str, header: str) -> None:
    rows = [delimiter.join(["nom", header, "prénom"])]
    rows += [delimiter.join([f'"Dupont{delimiter} Jean"', nir, "Jean"]) for nir in NIRS]
    subjects = parse_subjects("\n".join(rows).encode())
    assert texts(subjects) == NIRS
    assert subjects[0].place == "line 2"


def test_excel_s_byte_order_mark_and_crlf_line_endings_are_read() -> None:
    excel = ("\ufeffNom;NIR\r\n" + "".join(f"X;{nir}\r\n" for nir in NIRS)).encode()
    assert texts(parse_subjects(excel)) == NIRS
    plain = ("\ufeff" + "\r\n".join(NIRS) + "\r\n").encode()
    assert texts(parse_subjects(plain)) == NIRS


def test_old_mac_line_endings_count_as_lines() -> None:
    subjects = parse_subjects(f"nir\r{NIRS[0]}\r\r{NIRS[1]}\r".encode())
    assert [(s.text, s.place) for s in subjects] == [(NIRS[0], "line 2"), (NIRS[1], "line 4")]


def test_a_csv_header_without_a_nir_column_is_refused_naming_its_line() -> None:
    problem = refused(f"\nnom;numero_secu\nX;{NIRS[0]}\n".encode())
    assert problem.whole_file
    assert problem.problems == ["line 2: a CSV header without a column named nir (the column "
                                "of NIRs must be named so)"]


def test_a_csv_header_naming_two_nir_columns_is_refused() -> None:
    assert refused(b"nir;NIR\n").problems == ["line 1: two columns are named nir"]


def test_rows_of_blank_cells_are_skipped_and_rows_without_a_nir_are_refused() -> None:
    data = ("nom;nir;ville\n"
            f"A;{NIRS[0]};Lyon\n"
            ";;\n"           # an empty spreadsheet row: skipped
            "B;;Lyon\n"      # a family without its NIR: refused, it would be left out
            "C\n"            # a row cut short
            f"D;{NIRS[1]};Lyon\n").encode()
    problem = refused(data)
    assert problem.problems == ["line 4: the nir cell is empty",
                                "line 5: no nir cell (the row has 1 of the header's 3 columns)"]
    assert problem.total == 2


def test_every_bad_line_is_reported_by_number_in_file_order() -> None:
    lines = ["nir", NIRS[0], BAD_KEY, "", NIRS[1] + "0", "12345678", NIRS[2], "732829321"]
    problem = refused("\n".join(lines).encode())
    assert problem.problems == [
        "line 3: invalid NIR (its control key does not match)",
        "line 5: invalid NIR (expected 15 characters, got 16)",
        "line 6: invalid NIR (expected 15 characters, got 8)",
        "line 8: invalid SIREN (Luhn checksum fails)",
    ]
    assert (problem.total, problem.whole_file) == (4, False)


def test_the_first_problems_are_shown_and_all_are_counted() -> None:
    problem = refused("\n".join([BAD_KEY] * 1000).encode())
    assert len(problem.problems) == MAX_PROBLEMS
    assert problem.problems[-1] == f"line {MAX_PROBLEMS}: invalid NIR (its control key does not " \
                                   "match)"
    assert problem.total == 1000


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, 14), digit=st.sampled_from("0123456789"),
       spaced=st.booleans(), csv=st.booleans())
def test_no_problem_repeats_the_value_of_its_line(position: int, digit: str, spaced: bool,
                                                  csv: bool) -> None:
    typo = NIRS[3][:position] + digit + NIRS[3][position + 1:]
    line = " ".join(typo[i:i + 3] for i in range(0, 15, 3)) if spaced else typo
    data = (f"nom;nir\nX;{line}\n" if csv else f"{line}\n").encode()
    try:
        parse_subjects(data)
    except SubjectListRefused as problem:
        message = "\n".join(problem.problems)
        assert typo not in message
        assert line not in message
        assert not contains_nir(message)


@pytest.mark.parametrize("siren", ["732829321", "000000000", "7 3 2 8 2 9 3 2 1"])
def test_a_bad_siren_is_not_quoted_either(siren: str) -> None:
    problem = refused(f"{siren}\n".encode())
    assert "".join(siren.split()) not in problem.problems[0]
    assert problem.problems[0].startswith("line 1: invalid SIREN (")


def test_repeats_are_kept_for_the_caller_to_count() -> None:
    """The reader keeps every line: repeats are found by reference, arguments included
    (:func:`streams.state.subjects.distinct`)."""
    subjects = parse_subjects(f"{NIRS[0]}\n{NIRS[0]}\n{NIRS[1]}\n".encode())
    assert [s.place for s in subjects] == ["line 1", "line 2", "line 3"]


def test_text_that_is_not_utf8_is_refused_naming_each_line() -> None:
    latin1 = f"nom;nir\nJosé;{NIRS[0]}\nAnne;{NIRS[1]}\nHélène;{NIRS[2]}\n".encode("cp1252")
    problem = refused(latin1)
    assert [p.split(":")[0] for p in problem.problems] == ["line 2", "line 4"]
    assert "not UTF-8 text (save it as UTF-8" in problem.problems[0]


def test_a_header_that_is_not_utf8_refuses_the_file_at_line_1() -> None:
    problem = refused(f"nom;prénom;nir\nX;Y;{NIRS[0]}\n".encode("cp1252"))
    assert problem.problems == ["line 1: not UTF-8 text (save it as UTF-8: a spreadsheet's "
                                "“CSV UTF-8” format)"]


def test_utf16_text_is_refused_as_such() -> None:
    problem = refused(f"nir\n{NIRS[0]}\n".encode("utf-16"))
    assert problem.whole_file
    assert problem.problems[0].startswith("UTF-16 text, not UTF-8")


def test_a_binary_file_is_refused_by_its_lines() -> None:
    problem = refused(b"\x7fELF\x02\x01\x01\x00\x00\x00\n\x00\x00\xff\xfe\n")
    assert problem.problems == ["line 1: a NUL byte: not a text file",
                                "line 2: a NUL byte: not a text file"]


def test_a_line_longer_than_the_limit_is_refused_by_number() -> None:
    long_row = "nom;nir\n" + f"{'x' * MAX_LINE_CHARS};{NIRS[0]}\n" + f"X;{NIRS[1]}\n"
    problem = refused(long_row.encode())
    assert problem.problems == [f"line 2: longer than {MAX_LINE_CHARS:,} characters"]
    fits = "nom;nir\n" + f"{'x' * (MAX_LINE_CHARS - 16)};{NIRS[0]}\n"
    assert texts(parse_subjects(fits.encode())) == [NIRS[0]]


@pytest.mark.parametrize("data", [b"", b"\n\n  \n", b"\xef\xbb\xbf", b"Nom;NIR\r\n;\r\n"])
def test_a_file_naming_no_subject_is_refused(data: bytes) -> None:
    problem = refused(data)
    assert problem.problems == ["names no subject (only blank lines, or a header)"]


def test_an_unbalanced_quote_is_refused_not_guessed() -> None:
    big = "nom;nir\n\"" + ("x" * 1000 + "\n") * 200 + f";{NIRS[0]}\n"
    problem = refused(big.encode())
    assert problem.problems[0].endswith("not readable as CSV (an unbalanced quote?)")


def test_a_missing_file_a_directory_and_an_oversized_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SubjectListRefused, match=r"^no such file$"):
        load(str(tmp_path / "absent.csv"))
    with pytest.raises(SubjectListRefused, match=r"^a directory, not a file$"):
        load(str(tmp_path))
    huge = tmp_path / "huge.csv"
    with huge.open("wb") as file:
        file.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(SubjectListRefused, match=r"^larger than 64 MiB: split it"):
        load(str(huge))


def test_the_size_limit_is_inclusive(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(subject_lists, "MAX_FILE_BYTES", 16)
    path = tmp_path / "exact"
    path.write_text(NIRS[0] + "\n")
    assert texts(read_subject_list(str(path))) == [NIRS[0]]
    path.write_text(NIRS[0] + "\n\n")
    with pytest.raises(SubjectListRefused, match=r"^larger than"):
        load(str(path))


def test_a_dash_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(f"nir\n{NIRS[0]}\n".encode()))
    monkeypatch.setattr("sys.stdin", stdin)
    assert texts(read_subject_list("-")) == [NIRS[0]]


def test_a_file_naming_too_many_subjects_is_refused_before_the_rest_is_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subject_lists, "MAX_SUBJECTS", 3)
    assert len(parse_subjects("\n".join(NIRS[:3]).encode())) == 3
    problem = refused("\n".join([*NIRS[:4], BAD_KEY]).encode())
    assert problem.whole_file
    assert problem.problems == ["names more than 3 subjects (line 4): split it into several "
                                "files, each written and fenced on its own"]


def test_the_limits_are_those_the_documentation_gives() -> None:
    """README.md and docs/commands.md quote them."""
    assert (MAX_FILE_BYTES, MAX_LINE_CHARS, subject_lists.MAX_SUBJECTS, MAX_PROBLEMS) == (
        64 * 1024 * 1024, 16 * 1024, 1_000_000, 20)
