"""BACKWARD_TRANSITIVE checks: the shipped catalog passes, deliberate breaks are named."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import fastavro

from schemas.catalog import Catalog, SchemaVersion
from schemas.compatibility import Incompatibility, check_catalog, check_versions

CATALOG = Catalog.load()
BOURSIER_V1 = CATALOG.dataset("statut_etudiant_boursier").version(1).raw
ETUDIANT_V1 = CATALOG.dataset("statut_etudiant").version(1).raw


def _version(number: int, raw: dict[str, Any]) -> SchemaVersion:
    raw = copy.deepcopy(raw)
    raw["circulation"]["version"] = number
    parsed = fastavro.parse_schema(raw)
    assert isinstance(parsed, dict)
    return SchemaVersion(number, json.dumps(raw), parsed)


def _evolve(raw: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``raw`` whose top-level field ``name`` is replaced (None: removed) or added."""
    evolved = copy.deepcopy(raw)
    fields = {f["name"]: f for f in evolved["fields"]}
    for name, field in changes.items():
        if field is None:
            del fields[name]
        else:
            fields[name] = {"name": name, "doc": "test"} | field
    evolved["fields"] = list(fields.values())
    return evolved


def _check(*schemas: dict[str, Any]) -> list[Incompatibility]:
    return check_versions("test", {n: _version(n, s) for n, s in enumerate(schemas, start=1)})


def test_the_shipped_catalog_is_backward_transitive() -> None:
    assert check_catalog(CATALOG) == []


def test_adding_an_optional_field_is_compatible() -> None:
    v2 = _evolve(BOURSIER_V1, note={"type": ["null", "string"], "default": None})
    assert _check(BOURSIER_V1, v2) == []


def test_removing_a_field_is_compatible_for_new_readers() -> None:
    assert _check(BOURSIER_V1, _evolve(BOURSIER_V1, ville_etudes=None)) == []


def test_adding_a_required_field_is_reported_naming_it() -> None:
    v2 = _evolve(BOURSIER_V1, montant_annuel_centimes={"type": "long"})
    (problem,) = _check(BOURSIER_V1, v2)
    assert (problem.schema, problem.reader_version, problem.writer_version) == ("test", 2, 1)
    assert problem.field == "montant_annuel_centimes"
    assert problem.location == "/fields/6"
    assert problem.kinds == ("reader_field_missing_default_value",)
    assert "test: v2 cannot read v1 data: montant_annuel_centimes (/fields/6)" in str(problem)


def test_making_a_nullable_field_required_is_reported_naming_it() -> None:
    v2 = _evolve(BOURSIER_V1, echelon={"type": "string"})
    (problem,) = _check(BOURSIER_V1, v2)
    assert problem.field == "echelon"
    assert problem.kinds == ("type_mismatch",)
    assert problem.messages == ("reader type: string not compatible with writer type: null",)


def test_several_problems_are_each_paired_with_their_own_field() -> None:
    v2 = copy.deepcopy(ETUDIANT_V1)
    inscription = v2["fields"][0]["type"]["items"]
    inscription["fields"][2]["type"]["symbols"] = ["inscrit"]  # statut loses "admis"
    inscription["fields"][6]["type"] = "int"  # code_commune: string -> int
    v2["fields"].append({"name": "ine", "type": "string", "doc": "test"})
    problems = {p.field: p for p in _check(ETUDIANT_V1, v2)}
    assert sorted(problems) == ["ine", "inscriptions[].code_commune", "inscriptions[].statut"]
    assert problems["inscriptions[].statut"].kinds == ("missing_enum_symbols",)
    assert problems["inscriptions[].statut"].messages == ("{'admis'}",)
    assert problems["inscriptions[].statut"].location == "/fields/0/type/items/fields/2/type"
    assert problems["inscriptions[].code_commune"].kinds == ("type_mismatch",)
    assert problems["ine"].kinds == ("reader_field_missing_default_value",)


def test_renaming_a_record_is_reported() -> None:
    v2 = copy.deepcopy(ETUDIANT_V1)
    v2["fields"][0]["type"]["items"]["name"] = "Enrolment"
    (problem,) = _check(ETUDIANT_V1, v2)
    assert problem.field == "inscriptions[]"
    assert problem.kinds == ("name_mismatch",)


def test_checks_are_transitive_not_only_against_the_previous_version() -> None:
    v2 = _evolve(BOURSIER_V1, montant={"type": ["null", "long"], "default": None})
    v3 = _evolve(v2, montant={"type": ["null", "long"]})  # default dropped
    problems = _check(BOURSIER_V1, v2, v3)
    assert [(p.reader_version, p.writer_version, p.field) for p in problems] == [(3, 1, "montant")]


def test_check_catalog_reports_an_incompatible_version_on_disk(tmp_path: Path) -> None:
    folder = tmp_path / "cnous"
    folder.mkdir()
    v2 = _evolve(BOURSIER_V1, ville_etudes={"type": "int"})
    v2["circulation"]["version"] = 2
    for number, raw in ((1, BOURSIER_V1), (2, v2)):
        (folder / f"statut_etudiant_boursier.v{number}.avsc").write_text(json.dumps(raw))
    problems = check_catalog(Catalog.load(tmp_path))
    assert [(p.schema, p.reader_version, p.writer_version, p.field) for p in problems] == [
        ("statut_etudiant_boursier", 2, 1, "ville_etudes")
    ]


def test_check_catalog_covers_bus_records(tmp_path: Path) -> None:
    folder = tmp_path / "bus"
    folder.mkdir()
    v1 = CATALOG.bus_record("consent").latest.raw
    v2 = _evolve(v1, expires_at={"type": {"type": "long", "logicalType": "timestamp-millis"}})
    v2["circulation"]["version"] = 2
    for number, raw in ((1, v1), (2, v2)):
        (folder / f"consent.v{number}.avsc").write_text(json.dumps(raw))
    (problem,) = check_catalog(Catalog.load(tmp_path))
    assert (problem.schema, problem.field) == ("bus/consent", "expires_at")
