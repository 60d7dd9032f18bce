"""Field projection: only the allowed fields, same types, own names, unions for several datasets."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.catalog import Catalog
from schemas.codec import decode, encode, from_json
from schemas.projection import (
    DELIVERY_NAMESPACE,
    ProjectionError,
    delivery_namespace,
    delivery_schema,
    field_names,
    full_name,
    project_datum,
    project_schema,
    union_value,
)
from streams.dev.synthetic import generate

CATALOG = Catalog.load()


def _parse(schema: Any) -> Any:
    """fastavro's parsed form (typed loosely: records, unions and names all come back)."""
    return fastavro.parse_schema(schema)


def _project(dataset_id: str, fields: list[str], contract: str = "test-contract") -> Any:
    return project_schema(CATALOG.dataset(dataset_id).latest.raw, fields,
                          namespace=delivery_namespace(contract, dataset_id),
                          doc=f"{dataset_id} for {contract}")


def _field(schema: dict[str, Any], name: str) -> Any:
    (found,) = [f for f in schema["fields"] if f["name"] == name]
    return found


def _datum(dataset_id: str, seed: int = 0) -> Any:
    event = next(iter(generate(dataset_id, 1, seed)))
    return from_json(CATALOG.dataset(dataset_id).latest.parsed, event["data"])


def test_keeps_only_the_allowed_fields_in_the_dataset_order() -> None:
    projected = _project("quotient_familial", ["mois", "quotient_familial", "annee"])
    assert field_names(projected) == ("quotient_familial", "annee", "mois")


def test_kept_fields_keep_type_doc_default_and_constraints() -> None:
    source = CATALOG.dataset("statut_demandeur_emploi").latest.raw
    projected = _project("statut_demandeur_emploi", ["categorie", "inscrit"])
    kept = _field(projected, "categorie")
    original = _field(source, "categorie")
    assert kept["doc"] == original["doc"]
    assert kept["default"] is None
    assert kept["type"][0] == "null"
    assert kept["type"][1]["symbols"] == original["type"][1]["symbols"]
    mois = _field(_project("quotient_familial", ["mois"]), "mois")
    assert (mois["type"], mois["minimum"], mois["maximum"]) == ("int", 1, 12)


def test_projected_record_has_its_own_name_doc_and_annotations() -> None:
    source = CATALOG.dataset("quotient_familial").latest.raw
    projected = project_schema(source, ["annee"], namespace="fr.gouv.circulation.deliver.x.q",
                               doc="For x.", annotations={"contract": "x"})
    assert full_name(projected) == "fr.gouv.circulation.deliver.x.q.QuotientFamilial"
    assert full_name(projected) != full_name(source)
    assert projected["doc"] == "For x."
    assert projected["circulation"] == {"contract": "x"}
    _parse(projected)


def test_the_source_schema_is_left_untouched() -> None:
    source = CATALOG.dataset("quotient_familial").latest.raw
    before = json.dumps(source, sort_keys=True)
    project_schema(source, ["enfants"], namespace="a.b", doc="d")
    assert json.dumps(source, sort_keys=True) == before


def test_a_type_defined_in_a_dropped_field_is_defined_where_it_is_used() -> None:
    projected = _project("quotient_familial", ["enfants"])
    items = _field(projected, "enfants")["type"]["items"]
    assert items["type"] == "record"
    assert items["name"] == "Personne"
    parsed = _parse(projected)
    datum = project_datum(_datum("quotient_familial"), ["enfants"])
    assert decode(parsed, None, encode(parsed, datum)) == datum


def test_a_type_used_twice_is_defined_once_then_referenced() -> None:
    projected = _project("quotient_familial", ["allocataires", "enfants"])
    assert _field(projected, "allocataires")["type"]["items"]["name"] == "Personne"
    assert _field(projected, "enfants")["type"]["items"] == "Personne"
    names = _parse(projected)["__named_schemas"]
    namespace = delivery_namespace("test-contract", "quotient_familial")
    assert f"{namespace}.Personne" in names
    assert not any(n.startswith("fr.gouv.circulation.quotient_familial") for n in names)


def test_unknown_or_no_field_is_refused() -> None:
    with pytest.raises(ProjectionError, match="no field 'revenu'"):
        _project("quotient_familial", ["annee", "revenu"])
    with pytest.raises(ProjectionError, match="at least one field"):
        _project("quotient_familial", [])
    with pytest.raises(ProjectionError, match="record"):
        project_schema({"type": "enum", "name": "E", "symbols": ["a"]}, ["a"],
                       namespace="a", doc="d")


def test_delivery_namespace_is_a_valid_avro_namespace() -> None:
    assert delivery_namespace("lyon-cantine-2026", "quotient_familial") == (
        f"{DELIVERY_NAMESPACE}.lyon_cantine_2026.quotient_familial")
    assert delivery_namespace("69-aide", "statut_eleve") == (
        f"{DELIVERY_NAMESPACE}._69_aide.statut_eleve")
    with pytest.raises(ProjectionError):
        delivery_namespace("x", "not-a-name")


def test_single_dataset_delivery_schema_is_the_record_itself() -> None:
    record = _project("quotient_familial", ["annee"])
    assert delivery_schema([record]) == record


def test_several_datasets_give_a_union_that_tells_twins_apart() -> None:
    # Both attestations projected on the same field names, both with a StatutAttestation enum.
    vigilance = _project("attestation_vigilance", ["statut", "date_fin_validite"], "ugap")
    fiscale = _project("attestation_fiscale", ["statut", "date_fin_validite"], "ugap")
    union = delivery_schema([vigilance, fiscale])
    assert isinstance(union, list)
    assert [full_name(r) for r in union] == [
        full_name(vigilance), full_name(fiscale)]
    parsed = _parse(union)
    datum = project_datum(_datum("attestation_fiscale"), ["statut", "date_fin_validite"])
    payload = encode(parsed, union_value(union, full_name(fiscale), datum))
    read = fastavro.schemaless_reader(io.BytesIO(payload), parsed, None, return_record_name=True)
    assert read == (full_name(fiscale), datum)


def test_union_value_refuses_a_record_that_is_not_a_branch() -> None:
    record = _project("quotient_familial", ["annee"])
    assert union_value(record, full_name(record), {"annee": 2026}) == {"annee": 2026}
    with pytest.raises(ProjectionError):
        union_value(record, "x.Other", {"annee": 2026})
    union = delivery_schema([record, _project("statut_eleve", ["niveau"])])
    with pytest.raises(ProjectionError):
        union_value(union, "x.Other", {})


def test_union_branches_must_have_distinct_names() -> None:
    record = _project("quotient_familial", ["annee"])
    with pytest.raises(ProjectionError, match="distinct"):
        delivery_schema([record, record])
    with pytest.raises(ProjectionError):
        delivery_schema([])


def test_project_datum_drops_every_other_field() -> None:
    datum = {"quotient_familial": 812, "annee": 2026, "mois": 3, "enfants": []}
    assert project_datum(datum, ["annee", "mois", "absent"]) == {"annee": 2026, "mois": 3}


def test_every_dataset_projects_on_all_its_fields() -> None:
    for dataset in CATALOG.datasets():
        fields = list(field_names(dataset.latest.raw))
        projected = _project(dataset.id, fields)
        parsed = _parse(projected)
        datum = _datum(dataset.id)
        assert decode(parsed, None, encode(parsed, datum)) == datum


@st.composite
def projections(draw: st.DrawFn) -> tuple[str, list[str], int]:
    dataset = draw(st.sampled_from(CATALOG.datasets()))
    names = list(field_names(dataset.latest.raw))
    fields = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    return dataset.id, fields, draw(st.integers(0, 10_000))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(projections())
def test_a_projected_datum_only_has_allowed_fields_and_fits_the_projected_schema(
        case: tuple[str, list[str], int]) -> None:
    dataset_id, fields, seed = case
    projected = _parse(_project(dataset_id, fields))
    datum = project_datum(_datum(dataset_id, seed), fields)
    assert set(datum) <= set(fields)
    assert decode(projected, None, encode(projected, datum)) == datum
