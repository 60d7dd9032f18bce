"""CSV rows as published events: the header maps columns to attributes and data fields, each
cell read as its field's Avro type says; a wrong column or cell is refused by name, never by
what it held."""

from __future__ import annotations

import io
import re

import pytest

from connectors.csv_events import MAX_ROW_LINES, CsvHeaderRefused, CsvMapping, numbered_rows
from connectors.event_files import MAX_LINE_CHARS
from connectors.publisher import PublishRefused
from schemas.catalog import Catalog
from schemas.codec import from_json
from streams.dev.synthetic import generate
from tests.event_csv import events_csv

CATALOG = Catalog.load()
HEADER = ["source", "type", "subject", "est_boursier", "echelon", "statut", "date_debut_droits",
          "date_fin_droits", "ville_etudes", "montant_annuel_centimes"]
ROW = ["cnous", "statut_etudiant_boursier", "105037510597604", "true", "", "definitif",
       "2026-09-01", "2027-06-30", "Lyon", "512300"]


def _rows(text: str) -> list[list[str]]:
    return [row for _, row, _ in numbered_rows(io.StringIO(text, newline=""))
            if isinstance(row, list)]


@pytest.mark.parametrize("dataset", [d.id for d in CATALOG.datasets()])
def test_every_dataset_survives_the_trip_through_csv(dataset: str) -> None:
    """Whatever the field types (booleans, longs, dates, enums, nullable fields, arrays of
    records), the mapped event's data is the original's once the codec reads it."""
    schema = CATALOG.dataset(dataset).latest
    fields = [f["name"] for f in schema.parsed["fields"]]
    events = list(generate(dataset, 40, seed=5))
    header, *rows = _rows(events_csv(events, fields))
    mapping = CsvMapping(CATALOG, header)
    for event, row in zip(events, rows, strict=True):
        mapped = mapping.event(row)
        assert {k: mapped[k] for k in ("source", "type", "subject", "time")} == {
            k: event[k] for k in ("source", "type", "subject", "time")}
        assert from_json(schema.parsed, mapped["data"]) == from_json(schema.parsed, event["data"])


def test_cells_take_their_field_types_and_an_empty_cell_leaves_the_field_out() -> None:
    event = CsvMapping(CATALOG, HEADER).event(ROW)
    assert event["data"]["est_boursier"] is True
    assert event["data"]["montant_annuel_centimes"] == 512300
    assert "echelon" not in event["data"]
    assert "id" not in event  # the ingest derives one


@pytest.mark.parametrize(("column", "cell", "reason"), [
    ("est_boursier", "oui", "expected true or false"),
    ("montant_annuel_centimes", "12,5", "expected a whole number"),
    ("montant_annuel_centimes", "9" * 200, "expected a whole number"),
])
def test_a_wrong_cell_is_refused_by_its_field_never_by_its_value(column: str, cell: str,
                                                                  reason: str) -> None:
    row = list(ROW)
    row[HEADER.index(column)] = cell
    with pytest.raises(PublishRefused) as refused:
        CsvMapping(CATALOG, HEADER).event(row)
    assert (refused.value.field, refused.value.reason) == (f"data.{column}", reason)
    assert cell not in str(refused.value)


def test_a_json_cell_that_is_not_json_is_refused_by_its_field() -> None:
    fields = [f["name"] for f in CATALOG.dataset("quotient_familial").latest.parsed["fields"]]
    header, row = _rows(events_csv(generate("quotient_familial", 1, seed=2), fields))
    row[header.index("enfants")] = "[{"
    with pytest.raises(PublishRefused) as refused:
        CsvMapping(CATALOG, header).event(row)
    assert refused.value.field == "data.enfants"


def test_an_unknown_column_is_refused_naming_the_column() -> None:
    with pytest.raises(PublishRefused) as refused:
        CsvMapping(CATALOG, [*HEADER, "couleur"]).event([*ROW, "bleu"])
    assert refused.value.field == "column couleur"
    assert "bleu" not in str(refused.value)


def test_an_unknown_dataset_is_refused_as_publish_refuses_it() -> None:
    row = list(ROW)
    row[1] = "inconnu"
    with pytest.raises(PublishRefused) as refused:
        CsvMapping(CATALOG, HEADER).event(row)
    assert refused.value.field == "type"
    assert "inconnu" not in str(refused.value)


def test_a_row_of_another_width_is_refused() -> None:
    with pytest.raises(PublishRefused, match=r"^line: 9 cells where the header has 10$"):
        CsvMapping(CATALOG, HEADER).event(ROW[:-1])


def test_a_cell_that_was_not_utf8_refuses_its_line() -> None:
    row = list(ROW)
    row[HEADER.index("ville_etudes")] = "Lyon\udce9"
    with pytest.raises(PublishRefused) as refused:
        CsvMapping(CATALOG, HEADER).event(row)
    assert refused.value.field == "line"


@pytest.mark.parametrize(("header", "message"), [
    (["type", "subject", "est_boursier"], "the header has no column source"),
    ([*HEADER, "ville_etudes"], "column 11 (ville_etudes) appears twice"),
    ([*HEADER, "105037510597604"], "column 11 of the header holds what looks like a NIR"),
])
def test_a_header_the_file_cannot_be_read_with_is_refused(header: list[str],
                                                          message: str) -> None:
    with pytest.raises(CsvHeaderRefused, match=re.escape(message)) as refused:
        CsvMapping(CATALOG, header)
    assert "105037510597604" not in str(refused.value)


def test_rows_are_numbered_by_the_line_they_start_on_and_bad_csv_refuses_only_its_row() -> None:
    text = 'a,b\n1,"two\nlines"\n\n3,"bad"x\n5,6\n'
    numbered = list(numbered_rows(io.StringIO(text, newline="")))
    assert [(n, row) for n, row, _ in numbered if isinstance(row, list)] == [
        (1, ["a", "b"]), (2, ["1", "two\nlines"]), (6, ["5", "6"])]
    refusals = [(n, row, raw) for n, row, raw in numbered if isinstance(row, PublishRefused)]
    assert [(n, raw) for n, _, raw in refusals] == [(5, '3,"bad"x')]
    assert refusals[0][1].field == "line"


def test_a_stray_quote_refuses_its_own_line_and_reading_goes_on_at_the_next() -> None:
    lines = [f"{n},x" for n in range(3, 3 + 5 * MAX_ROW_LINES)]
    text = "a,b\n" + '1,"stray\n' + "\n".join(lines) + "\n"
    numbered = list(numbered_rows(io.StringIO(text, newline="")))
    assert [(n, raw) for n, row, raw in numbered if isinstance(row, PublishRefused)] == [
        (2, '1,"stray')]
    assert [row for _, row, _ in numbered if isinstance(row, list)][1:] == [
        line.split(",") for line in lines]


def test_a_line_longer_than_the_bound_is_refused_unread() -> None:
    text = "a,b\n" + "1," + "x" * MAX_LINE_CHARS + "\n2,y\n"
    numbered = list(numbered_rows(io.StringIO(text, newline="")))
    assert [(n, raw) for n, row, raw in numbered if isinstance(row, PublishRefused)] == [
        (2, None)]
    assert numbered[-1][:2] == (3, ["2", "y"])


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_the_delimiter_is_the_header_s_comma_semicolon_or_tab(delimiter: str) -> None:
    others = "a,b;c\td".replace(delimiter, "")  # the other separators are text in a cell
    text = delimiter.join(["source", "type", "ville"]) + "\n" + delimiter.join(
        ["cnous", "t", others]) + "\n"
    assert _rows(text) == [["source", "type", "ville"], ["cnous", "t", others]]
