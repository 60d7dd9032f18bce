"""Contracts: file validation with every problem reported, durations, windows, bus records."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from schemas.catalog import Catalog
from schemas.codec import decode, encode, from_json, to_json
from schemas.identifiers import validate_siret
from schemas.projection import full_name
from streams.cli import contracts as contracts_cli
from streams.state.contract import FILE_KEYS, Contract, duration_ms, segment_ms
from streams.state.contract_files import ContractProblem, validate_paths

CATALOG = Catalog.load()
DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "contracts"
DAY = 86_400_000

LYON: dict[str, Any] = {
    "id": "lyon-cantine-2026",
    "subscriber": "ville-de-lyon",
    "subscriber_siret": "21690123100011",
    "purpose": "Tarification sociale de la restauration scolaire",
    "legal_basis": "CRPA art. L114-8 ; délibération du conseil municipal n° 2026-114",
    "datasets": {"quotient_familial": ["quotient_familial", "annee", "mois"]},
    "consent": "opt_in",
    "population": "enrolled",
    "retention": "P90D",
    "valid_from": date(2026, 1, 1),
    "valid_until": date(2027, 12, 31),
}


def _write(folder: Path, name: str, document: Any) -> Path:
    path = folder / name
    text = document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False,
                                                                       allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return path


def _problems(tmp_path: Path, document: Any) -> list[ContractProblem]:
    contracts, problems = validate_paths([_write(tmp_path, "c.yaml", document)], CATALOG)
    assert not contracts
    return problems


def _lyon(**changes: Any) -> dict[str, Any]:
    document = {**LYON, **changes}
    return {k: v for k, v in document.items() if v is not ...}


# --- durations -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("P90D", 90 * DAY),
    ("P1Y", 365 * DAY),
    ("P6M", 180 * DAY),
    ("P2W", 14 * DAY),
    ("PT12H", 12 * 3_600_000),
    ("PT30S", 30_000),
    ("P1Y2M10DT2H30M", (365 + 60 + 10) * DAY + 2 * 3_600_000 + 30 * 60_000),
])
def test_iso_durations_convert_with_the_documented_convention(text: str, expected: int) -> None:
    assert duration_ms(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "90D", "-P1D", "P0D", "PT0S", "P0Y0M",
                                  "P1.5D", "p1d", "P1DT", "P1H", "PT1D", "P 1D",
                                  "P99999999999Y"])
def test_bad_zero_or_negative_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"retention|duration"):
        duration_ms(text)


@pytest.mark.parametrize(("retention", "segment"), [
    (90 * DAY, DAY),            # capped at one day
    (DAY, DAY // 10),           # a tenth of the retention
    (3_600_000, 360_000),
    (300_000, 60_000),          # never below a minute
])
def test_segment_rolls_well_before_the_retention(retention: int, segment: int) -> None:
    assert segment_ms(retention) == segment


def test_delivery_topic_and_its_configuration() -> None:
    contract = Contract.checked(LYON, CATALOG)
    assert contract.delivery_topic == "deliver.ville-de-lyon.lyon-cantine-2026"
    assert contract.delivery_subject == "deliver.ville-de-lyon.lyon-cantine-2026-value"
    assert contract.retention_ms == 90 * DAY
    assert contract.topic_config() == {"cleanup.policy": "delete",
                                       "retention.ms": str(90 * DAY), "segment.ms": str(DAY)}


# --- activity ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("on", "active", "state"), [
    (date(2025, 12, 31), False, "pending"),
    (date(2026, 1, 1), True, "active"),
    (date(2027, 12, 31), True, "active"),
    (date(2028, 1, 1), False, "expired"),
])
def test_active_between_valid_from_and_valid_until_inclusive(on: date, active: bool,
                                                             state: str) -> None:
    contract = Contract.checked(LYON, CATALOG)
    assert contract.is_active(on) is active
    assert contract.state(on) == state


def test_open_ended_contract_stays_active_and_revoked_never_is() -> None:
    contract = Contract.checked(_lyon(valid_until=...), CATALOG)
    assert contract.valid_until is None
    assert contract.is_active(date(2099, 1, 1))
    revoked = contract.revoke(datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC))
    assert not revoked.is_active(date(2026, 6, 1))
    assert revoked.state(date(2026, 6, 1)) == "revoked"
    assert revoked.revoked_at == datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert not contract.revoked, "revoking gives a new contract, the old one is unchanged"


def test_revoked_at_goes_with_revoked() -> None:
    with pytest.raises(ValidationError, match="revoked_at"):
        Contract.model_validate({**LYON, "revoked": True})
    with pytest.raises(ValidationError, match="revoked_at"):
        Contract.model_validate({**LYON, "revoked_at": datetime(2026, 1, 1, tzinfo=UTC)})


def test_contract_is_frozen() -> None:
    contract = Contract.checked(LYON, CATALOG)
    with pytest.raises(ValidationError):
        contract.id = "other"  # type: ignore[misc]


# --- catalog checks ---------------------------------------------------------------------------

def test_checked_refuses_what_the_catalog_does_not_know() -> None:
    with pytest.raises(ValidationError, match=r"datasets\.quotient_familial\[0\]: unknown field"):
        Contract.checked(_lyon(datasets={"quotient_familial": ["revenu"]}), CATALOG)
    with pytest.raises(ValidationError, match=r"datasets\[0\]: unknown dataset"):
        Contract.checked(_lyon(datasets={"inconnu": ["x"]}), CATALOG)


def test_a_recorded_contract_loads_without_the_catalog() -> None:
    """What is on the topic was checked when applied; it must load even if the catalog moved."""
    record = Contract.checked(LYON, CATALOG).to_record()
    record["datasets"] = {"retired_dataset": ["x"]}
    assert Contract.from_record(record).datasets == {"retired_dataset": ("x",)}


# --- the bus record ---------------------------------------------------------------------------

def _contract_schema() -> Any:
    return CATALOG.bus_record("contract").latest


def test_record_has_exactly_the_bus_contract_fields() -> None:
    record = Contract.checked(LYON, CATALOG).to_record()
    assert list(record) == [f["name"] for f in _contract_schema().raw["fields"]]


@pytest.mark.parametrize("revoked", [False, True])
def test_record_round_trips_through_avro(revoked: bool) -> None:
    contract = Contract.checked(LYON, CATALOG)
    if revoked:
        contract = contract.revoke(datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC))
    parsed = _contract_schema().parsed
    payload = encode(parsed, from_json(parsed, contract.to_record()))
    again = Contract.from_record(to_json(parsed, decode(parsed, None, payload)))
    assert again == contract
    assert again.to_record() == contract.to_record()


def test_file_form_round_trips_through_yaml() -> None:
    contract = Contract.checked(LYON, CATALOG)
    text = yaml.safe_dump(contract.to_file(), sort_keys=False, allow_unicode=True)
    assert list(yaml.safe_load(text)) == [k for k in FILE_KEYS if k != "delivery"]
    assert Contract.checked(yaml.safe_load(text), CATALOG) == contract


def test_delivery_schema_of_a_multi_dataset_contract_is_a_union() -> None:
    (contract,), problems = validate_paths([DEPLOY / "idfm-tarif-solidarite.yaml"], CATALOG)
    assert not problems
    union = contract.delivery_schema(CATALOG)
    assert isinstance(union, list)
    assert len(union) == 2
    assert [r["circulation"]["dataset"] for r in union] == list(contract.datasets)
    for record in union:
        assert record["namespace"].startswith("fr.gouv.circulation.deliver.idfm_tarif_solidarite")
        assert contract.purpose in record["doc"]
        assert contract.id in record["doc"]
        assert [f["name"] for f in record["fields"]] == list(
            contract.datasets[record["circulation"]["dataset"]])
    fastavro.parse_schema(union)
    single = Contract.checked(LYON, CATALOG).delivery_schema(CATALOG)
    assert isinstance(single, dict)
    assert full_name(single).endswith("lyon_cantine_2026.quotient_familial.QuotientFamilial")


# --- files ------------------------------------------------------------------------------------

def test_shipped_contracts_are_valid() -> None:
    contracts, problems = validate_paths([DEPLOY], CATALOG)
    assert problems == []
    assert {c.id for c in contracts} == {"lyon-cantine-2026", "idfm-tarif-solidarite",
                                         "cd69-aide-etudiants", "ugap-marches-publics"}
    for contract in contracts:
        assert validate_siret(contract.subscriber_siret) == contract.subscriber_siret
    lyon = next(c for c in contracts if c.id == "lyon-cantine-2026")
    assert lyon == Contract.checked(
        {**LYON, "legal_basis": lyon.legal_basis}, CATALOG)


def test_a_valid_file_gives_its_contract(tmp_path: Path) -> None:
    contracts, problems = validate_paths([_write(tmp_path, "lyon.yaml", LYON)], CATALOG)
    assert problems == []
    assert contracts == [Contract.checked(LYON, CATALOG)]


@pytest.mark.parametrize(("changes", "key", "reason"), [
    ({"datasets": {"inconnu": ["x"]}}, "datasets[0]", "unknown dataset (known: "),
    ({"datasets": {"quotient_familial": ["revenu"]}}, "datasets.quotient_familial[0]",
     "unknown field (dataset quotient_familial v1 has: "),
    ({"datasets": {"quotient_familial": []}}, "datasets.quotient_familial", "lists no field"),
    ({"datasets": {"quotient_familial": ["mois", "mois"]}}, "datasets.quotient_familial[1]",
     "listed twice (also at [0])"),
    ({"datasets": {}}, "datasets", "names no dataset"),
    ({"datasets": ["quotient_familial"]}, "datasets", "dictionary"),
    ({"retention": "90 days"}, "retention", "not an ISO 8601 duration"),
    ({"retention": "P0D"}, "retention", "zero"),
    ({"retention": "-P1D"}, "retention", "not an ISO 8601 duration"),
    ({"subscriber_siret": "21690123100012"}, "subscriber_siret", "Luhn"),
    ({"subscriber_siret": "2169012310001"}, "subscriber_siret", "14 digits"),
    ({"subscriber_siret": 21690123100011}, "subscriber_siret", "quoted string"),
    ({"purpose": ...}, "purpose", "missing key"),
    ({"colour": "blue"}, "[11]", "unknown key"),
    ({"revoked": True}, "revoked", "set by `circulation contracts revoke`"),
    ({"valid_until": date(2025, 12, 31)}, "valid_until", "before valid_from"),
    ({"valid_from": 20260101}, "valid_from", "expected a date"),
    ({"valid_from": "2026-02-30"}, "valid_from", "date"),
    ({"id": "Lyon_Cantine"}, "id", "lower-case letters, digits or hyphens"),
    ({"id": "ly"}, "id", "3 to 64"),
    ({"id": "x" * 65}, "id", "3 to 64"),
    ({"subscriber": "Ville de Lyon"}, "subscriber", "lower-case letters"),
    ({"consent": "yes"}, "consent", "'opt_in', 'opt_out' or 'not_required'"),
    ({"population": "everyone"}, "population", "'enrolled' or 'all'"),
    ({"purpose": "   "}, "purpose", "blank"),
    ({"datasets": {"attestation_fiscale": ["statut"]}}, "consent", "about companies"),
])
def test_each_problem_is_reported_with_its_key_and_reason(
        tmp_path: Path, changes: dict[str, Any], key: str, reason: str) -> None:
    problems = _problems(tmp_path, _lyon(**changes))
    assert [(p.key, reason in p.reason) for p in problems] == [(key, True)], problems
    assert problems[0].file == str(tmp_path / "c.yaml")


def test_every_problem_of_a_file_is_reported_at_once_with_its_line(tmp_path: Path) -> None:
    text = (
        "id: Lyon\n"                                              # 1
        "subscriber: ville-de-lyon\n"                             # 2
        "subscriber_siret: '21690123100012'\n"                    # 3
        "purpose: Tarification\n"                                 # 4
        "datasets:\n"                                             # 5
        "  quotient_familial: [quotient_familial, revenu]\n"      # 6
        "  inconnu: [x]\n"                                        # 7
        "consent: opt_in\n"                                       # 8
        "population: enrolled\n"                                  # 9
        "retention: P1X\n"                                        # 10
        "valid_from: 2026-01-01\n"                                # 11
        "valid_until: 2025-01-01\n"                               # 12
        "extra: 1\n"                                              # 13
    )
    problems = _problems(tmp_path, text)
    found = {(p.key, p.line) for p in problems}
    assert found == {
        ("id", 1), ("subscriber_siret", 3), ("datasets.quotient_familial[1]", 6),
        ("datasets[1]", 7), ("retention", 10), ("valid_until", 12), ("[10]", 13),
        ("legal_basis", None),
    }
    assert str(problems[0]).startswith(f"{tmp_path / 'c.yaml'}:1: id: ")


def test_yaml_syntax_error_is_reported_with_its_line(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "id: x\nsubscriber: [unclosed\npurpose: y\n")
    assert len(problems) == 1
    assert problems[0].key == ""
    assert "YAML syntax error" in problems[0].reason
    assert problems[0].line is not None
    assert problems[0].line >= 2


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty file"),
    ("- a\n- b\n", "mapping"),
    ("id: a\n---\nid: b\n", "YAML syntax error"),
])
def test_files_that_are_not_one_contract(tmp_path: Path, text: str, reason: str) -> None:
    problems = _problems(tmp_path, text)
    assert [reason in p.reason for p in problems] == [True]


def test_duplicate_yaml_key_is_reported(tmp_path: Path) -> None:
    text = yaml.safe_dump(LYON, sort_keys=False) + "retention: P1Y\n"
    problems = _problems(tmp_path, text)
    assert [(p.key, p.reason.startswith("duplicate key")) for p in problems] == [
        ("retention", True)]
    assert problems[0].line == len(text.splitlines())


def test_duplicate_ids_across_files_are_reported(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", LYON)
    _write(tmp_path, "b.yaml", _lyon(purpose="Autre finalité"))
    contracts, problems = validate_paths([tmp_path], CATALOG)
    assert [c.id for c in contracts] == ["lyon-cantine-2026"]
    assert [(Path(p.file).name, p.key) for p in problems] == [("b.yaml", "id")]
    assert "duplicate id 'lyon-cantine-2026'" in problems[0].reason
    assert "a.yaml" in problems[0].reason


def test_a_file_named_twice_is_checked_once(tmp_path: Path) -> None:
    path = _write(tmp_path, "lyon.yaml", LYON)
    contracts, problems = validate_paths([tmp_path, path], CATALOG)
    assert (len(contracts), problems) == (1, [])


def test_problems_across_several_files_and_missing_paths(tmp_path: Path) -> None:
    _write(tmp_path, "good.yaml", LYON)
    _write(tmp_path, "bad.yml", _lyon(id="autre-contrat", retention="P0D"))
    _write(tmp_path, "notes.txt", "not a contract")
    empty = tmp_path / "empty"
    empty.mkdir()
    contracts, problems = validate_paths([tmp_path, empty, tmp_path / "missing.yaml"], CATALOG)
    assert [c.id for c in contracts] == ["lyon-cantine-2026"]
    assert sorted((Path(p.file).name, p.key) for p in problems) == [
        ("bad.yml", "retention"), ("empty", ""), ("missing.yaml", "")]


# --- the command line (offline commands) ------------------------------------------------------

def test_cli_validate_passes_the_shipped_contracts() -> None:
    result = CliRunner().invoke(contracts_cli.app, ["validate", str(DEPLOY)])
    assert result.exit_code == 0, result.output
    assert "4 valid contracts" in result.output


def test_cli_validate_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.yaml", _lyon(retention="P0D", consent="maybe"))
    lines = path.read_text(encoding="utf-8").splitlines()
    line = {key: lines.index(next(x for x in lines if x.startswith(f"{key}:"))) + 1
            for key in ("retention", "consent")}
    _write(tmp_path, "b.yaml", "id: [\n")
    result = CliRunner().invoke(contracts_cli.app, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert f"a.yaml:{line['retention']}: retention:" in result.output
    assert f"a.yaml:{line['consent']}: consent:" in result.output
    assert "b.yaml" in result.output
    assert "YAML syntax error" in result.output
    assert "3 problems in 2 files" in result.output


def test_cli_apply_refuses_invalid_files_before_touching_kafka(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", _lyon(datasets={"inconnu": ["x"]}))
    result = CliRunner().invoke(contracts_cli.app, ["apply", str(tmp_path)])
    assert result.exit_code == 1
    assert "datasets[0]: unknown dataset" in result.output


def test_durations_in_shipped_contracts_are_what_operators_expect() -> None:
    contracts, _ = validate_paths([DEPLOY], CATALOG)
    retention = {c.id: timedelta(milliseconds=c.retention_ms) for c in contracts}
    assert retention == {"lyon-cantine-2026": timedelta(days=90),
                         "idfm-tarif-solidarite": timedelta(days=365),
                         "cd69-aide-etudiants": timedelta(days=180),
                         "ugap-marches-publics": timedelta(days=5 * 365)}
    assert json.loads(json.dumps(contracts[0].to_record()))["valid_from"] == "2026-09-01"
