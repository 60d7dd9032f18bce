"""The router's compiled constraint check agrees with the codec's JSON validation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from schemas.catalog import Catalog
from schemas.codec import ValidationError, from_json
from schemas.constraints import compile_checker
from streams.dev.synthetic import generate

CATALOG = Catalog.load()


def _datum(dataset: str, seed: int = 1) -> tuple[Any, dict[str, Any]]:
    schema = CATALOG.dataset(dataset).latest
    event = next(iter(generate(dataset, 1, seed)))
    return schema, from_json(schema.parsed, event["data"])


@pytest.mark.parametrize("dataset", [d.id for d in CATALOG.datasets()])
def test_valid_generated_data_passes(dataset: str) -> None:
    schema, datum = _datum(dataset)
    compile_checker(schema.raw)(datum)


@pytest.mark.parametrize(
    ("dataset", "mutate", "path"),
    [
        ("quotient_familial", lambda d: d.update(mois=13), "data.mois"),
        ("quotient_familial", lambda d: d.update(quotient_familial=-1), "data.quotient_familial"),
        ("statut_eleve", lambda d: d.update(echelon_bourse=9), "data.echelon_bourse"),
        ("statut_eleve", lambda d: d.update(annee_scolaire="2026/27"), "data.annee_scolaire"),
        ("statut_etudiant",
         lambda d: d["inscriptions"][0].update(etablissement_uai="12345"),
         "data.inscriptions[0].etablissement_uai"),
        ("statut_etudiant_boursier", lambda d: d.update(echelon="8"), "data.echelon"),
    ],
)
def test_a_broken_constraint_is_refused_with_its_path(dataset: str, mutate: Any,
                                                      path: str) -> None:
    schema, datum = _datum(dataset)
    broken = copy.deepcopy(datum)
    mutate(broken)
    with pytest.raises(ValidationError) as caught:
        compile_checker(schema.raw)(broken)
    assert caught.value.field == path
