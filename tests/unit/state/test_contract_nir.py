"""A contract names no person: a NIR in any of its strings is refused, naming the key only."""

from __future__ import annotations

import copy
import re
from typing import Any

import pydantic
import pytest

from schemas.catalog import Catalog
from schemas.nir_detection import contains_nir
from streams.state.contract import Contract
from streams.state.contract_files import check_document

CATALOG = Catalog.load()
NIR = "184127645108946"
DOCUMENT: dict[str, Any] = {
    "id": "lyon-cantine-2026", "subscriber": "ville-de-lyon",
    "subscriber_siret": "21690123100011", "purpose": "Tarification sociale",
    "legal_basis": "CRPA art. L114-8",
    "datasets": {"quotient_familial": ["quotient_familial", "annee", "mois"]},
    "consent": "opt_in", "population": "enrolled", "retention": "P90D",
    "valid_from": "2026-01-01",
}


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(DOCUMENT)
    target: Any = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


CASES = [
    (_with(["purpose"], f"Dossier de M. X ({NIR})"), "purpose"),
    (_with(["legal_basis"], "décision 1 84 12 76 451 089 46"), "legal_basis"),
    (_with(["id"], f"lyon-{NIR}"), "id"),
    (_with(["subscriber"], "1.84.12.76.451.089"), "subscriber"),
    (_with(["retention"], NIR), "retention"),
    (_with(["datasets", "quotient_familial", 1], NIR), "datasets.quotient_familial[1]"),
    ({**DOCUMENT, "datasets": {NIR: ["annee"]}}, "datasets"),  # a key is never shown
    ({**DOCUMENT, "remarque": f"voir {NIR}"}, "[10]"),  # an unknown key, by position
]


def test_a_contract_without_nir_is_valid() -> None:
    assert check_document(DOCUMENT, "lyon.yaml", CATALOG)[1] == []


@pytest.mark.parametrize(("document", "key"), CASES)
def test_a_nir_in_a_contract_file_is_refused_naming_the_key(document: dict[str, Any],
                                                           key: str) -> None:
    contract, problems = check_document(document, "lyon.yaml", CATALOG, {"datasets": 6})
    assert contract is None
    assert [problem.key for problem in problems] == [key]
    assert "NIR" in problems[0].reason
    assert not any(contains_nir(str(problem)) for problem in problems)


@pytest.mark.parametrize(("document", "key"), CASES)
def test_the_contract_model_refuses_a_nir_too(document: dict[str, Any], key: str) -> None:
    with pytest.raises(pydantic.ValidationError) as refused:
        Contract.model_validate(document)
    field = "remarque" if key == "[10]" else re.split(r"[.\[]", key)[0]  # pydantic's own loc
    assert {str(error["loc"][0]) for error in refused.value.errors()} == {field}
    assert NIR not in str(refused.value)
    assert not contains_nir(str(refused.value))
