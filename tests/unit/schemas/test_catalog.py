"""The shipped catalog: which datasets exist, who publishes them, and the schema conventions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from schemas.catalog import (
    Catalog,
    CatalogError,
    NotPublishedBy,
    UnknownBusRecord,
    UnknownDataset,
    UnknownVersion,
)

PERSON, COMPANY = "person", "company"

# The contract with providers and subscribers: dataset id -> (providers, subject kind, fields).
DATASETS: dict[str, tuple[tuple[str, ...], str, list[str]]] = {
    "quotient_familial": (
        ("cnaf", "msa"),
        PERSON,
        [
            "quotient_familial",
            "annee",
            "mois",
            "allocataires",
            "allocataires[].nom_naissance",
            "allocataires[].nom_usage",
            "allocataires[].prenoms",
            "allocataires[].date_naissance",
            "allocataires[].sexe",
            "enfants",
        ],
    ),
    "statut_etudiant": (
        ("mesr",),
        PERSON,
        [
            "inscriptions",
            "inscriptions[].etablissement_uai",
            "inscriptions[].etablissement_nom",
            "inscriptions[].statut",
            "inscriptions[].regime",
            "inscriptions[].date_debut_inscription",
            "inscriptions[].date_fin_inscription",
            "inscriptions[].code_commune",
        ],
    ),
    "statut_etudiant_boursier": (
        ("cnous",),
        PERSON,
        [
            "est_boursier",
            "echelon",
            "statut",
            "date_debut_droits",
            "date_fin_droits",
            "ville_etudes",
            "montant_annuel_centimes",
        ],
    ),
    "statut_eleve": (
        ("men",),
        PERSON,
        [
            "est_scolarise",
            "est_boursier",
            "echelon_bourse",
            "niveau",
            "etablissement_uai",
            "annee_scolaire",
        ],
    ),
    "paiements_france_travail": (
        ("france_travail",),
        PERSON,
        [
            "paiements",
            "paiements[].date_versement",
            "paiements[].montant_centimes",
            "paiements[].allocation",
        ],
    ),
    "complementaire_sante_solidaire": (
        ("cnam",),
        PERSON,
        ["statut", "date_debut_droits", "date_fin_droits"],
    ),
    "statut_demandeur_emploi": (
        ("france_travail",),
        PERSON,
        ["inscrit", "categorie", "date_inscription", "date_cessation_inscription"],
    ),
    "attestation_vigilance": (
        ("urssaf",),
        COMPANY,
        ["statut", "date_debut_validite", "date_fin_validite"],
    ),
    "attestation_fiscale": (
        ("dgfip",),
        COMPANY,
        ["statut", "date_delivrance", "date_fin_validite"],
    ),
    "procedure_collective": (
        ("infogreffe",),
        COMPANY,
        ["nature", "date_jugement", "tribunal"],
    ),
}
BUS_RECORDS = {
    "audit": "AuditRecord",
    "audit_checkpoint": "AuditCheckpoint",
    "consent": "ConsentRecord",
    "contract": "ContractRecord",
    "dead_letter": "DeadLetter",
    "erasure_notice": "ErasureNotice",
    "population": "PopulationRecord",
    "token": "TokenRecord",
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def _all_schemas(catalog: Catalog) -> Iterator[tuple[str, dict[str, Any]]]:
    for dataset in catalog.datasets():
        for number, version in dataset.versions.items():
            yield f"{dataset.id} v{number}", version.raw
    for record in catalog.bus_records():
        for number, version in record.versions.items():
            yield f"bus/{record.name} v{number}", version.raw


def _named_types(schema: Any) -> Iterator[dict[str, Any]]:
    """Every inline record and enum definition of a schema."""
    if isinstance(schema, list):
        for branch in schema:
            yield from _named_types(branch)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum"):
            yield schema
        for field in schema.get("fields", []):
            yield from _named_types(field["type"])
        for key in ("items", "values"):
            if key in schema:
                yield from _named_types(schema[key])


def _fields(schema: Any, prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every field of a schema with its path (``allocataires[].sexe``), inline types only."""
    for field in schema["fields"]:
        path = f"{prefix}{field['name']}"
        yield path, field
        types = field["type"] if isinstance(field["type"], list) else [field["type"]]
        for branch in types:
            if isinstance(branch, dict) and branch.get("type") == "array":
                branch = branch["items"]
                path += "[]"
            if isinstance(branch, dict) and branch.get("type") == "record":
                yield from _fields(branch, f"{path}.")


def test_catalog_holds_exactly_the_expected_datasets(catalog: Catalog) -> None:
    assert [d.id for d in catalog.datasets()] == sorted(DATASETS)


@pytest.mark.parametrize("dataset_id", sorted(DATASETS))
def test_dataset_providers_subject_kind_and_field_names(catalog: Catalog, dataset_id: str) -> None:
    providers, kind, fields = DATASETS[dataset_id]
    dataset = catalog.dataset(dataset_id)
    assert dataset.providers == providers
    assert dataset.subject_kind == kind
    assert [path for path, _ in _fields(dataset.latest.raw)] == fields


def test_quotient_familial_is_published_by_both_family_benefit_funds(catalog: Catalog) -> None:
    assert catalog.topic_for("cnaf", "quotient_familial") == "provider.cnaf.quotient_familial"
    assert catalog.topic_for("msa", "quotient_familial") == "provider.msa.quotient_familial"
    assert [d.id for d in catalog.datasets_of("msa")] == ["quotient_familial"]


def test_providers_and_their_datasets(catalog: Catalog) -> None:
    assert catalog.providers() == (
        "cnaf", "cnam", "cnous", "dgfip", "france_travail",
        "infogreffe", "men", "mesr", "msa", "urssaf",
    )  # fmt: skip
    assert [d.id for d in catalog.datasets_of("france_travail")] == [
        "paiements_france_travail",
        "statut_demandeur_emploi",
    ]
    assert catalog.datasets_of("nobody") == ()


def test_topic_for_refuses_a_provider_that_does_not_publish_the_dataset(catalog: Catalog) -> None:
    with pytest.raises(NotPublishedBy, match=r"'cnaf'.*'statut_eleve'.*published by: men"):
        catalog.topic_for("cnaf", "statut_eleve")


def test_unknown_dataset_and_bus_record_are_named(catalog: Catalog) -> None:
    with pytest.raises(UnknownDataset, match="'rsa'"):
        catalog.topic_for("cnaf", "rsa")
    with pytest.raises(UnknownBusRecord, match="'invoice'"):
        catalog.bus_record("invoice")


def test_statut_etudiant_boursier_has_two_versions(catalog: Catalog) -> None:
    dataset = catalog.dataset("statut_etudiant_boursier")
    assert sorted(dataset.versions) == [1, 2]
    assert dataset.latest.version == 2
    assert dataset.version(1).version == 1
    v1 = [f["name"] for f in dataset.version(1).raw["fields"]]
    v2 = [f["name"] for f in dataset.latest.raw["fields"]]
    assert v2 == [*v1, "montant_annuel_centimes"]
    with pytest.raises(UnknownVersion, match="no version 3"):
        dataset.version(3)


def test_bus_records(catalog: Catalog) -> None:
    assert [r.name for r in catalog.bus_records()] == sorted(BUS_RECORDS)
    for name, record_name in BUS_RECORDS.items():
        assert catalog.bus_record(name).latest.full_name == f"fr.gouv.circulation.bus.{record_name}"
    audit = [f["name"] for f in catalog.bus_record("audit").latest.raw["fields"]]
    assert {"event_id", "contract_id", "decision", "reason", "previous_hash", "record_hash"} <= set(
        audit
    )


def test_audit_v2_adds_the_hashed_form_and_the_contract_invalid_reason(catalog: Catalog) -> None:
    audit = catalog.bus_record("audit")
    assert sorted(audit.versions) == [1, 2, 3, 4, 5]
    v1, v2 = ({f["name"]: f for f in audit.version(n).raw["fields"]} for n in (1, 2))
    assert set(v2) - set(v1) == {"hash_version"}
    assert (v2["hash_version"]["type"], v2["hash_version"]["default"]) == (["null", "int"], None)
    reasons = {n: next(b for b in v["reason"]["type"] if b != "null")["symbols"]
               for n, v in ((1, v1), (2, v2))}
    assert reasons[2] == [*reasons[1], "contract_invalid"]


def test_audit_v3_adds_the_delivery_s_own_id_and_nothing_else(catalog: Catalog) -> None:
    audit = catalog.bus_record("audit")
    v2, v3 = ({f["name"]: f for f in audit.version(n).raw["fields"]} for n in (2, 3))
    assert set(v3) - set(v2) == {"delivery_id"}
    assert (v3["delivery_id"]["type"], v3["delivery_id"]["default"]) == (["null", "string"], None)
    assert [n for n in v3 if n != "delivery_id"] == list(v2)


def test_audit_v4_adds_a_deletion_s_day_count_and_decision_and_the_replay_mark_only(
        catalog: Catalog) -> None:
    audit = catalog.bus_record("audit")
    v3, v4 = ({f["name"]: f for f in audit.version(n).raw["fields"]} for n in (3, 4))
    added = {"file_day", "deliveries_deleted", "replay"}
    assert set(v4) - set(v3) == added
    assert (v4["file_day"]["type"], v4["file_day"]["default"]) == (
        ["null", {"type": "int", "logicalType": "date"}], None)
    assert (v4["deliveries_deleted"]["type"], v4["deliveries_deleted"]["default"]) == (
        ["null", "long"], None)
    assert (v4["replay"]["type"], v4["replay"]["default"]) == (["null", "boolean"], None)
    assert [n for n in v4 if n not in added] == list(v3)
    decisions = {n: v["decision"]["type"] for n, v in ((3, v3), (4, v4))}
    assert decisions[4]["symbols"] == [*decisions[3]["symbols"], "deleted"]
    assert decisions[4]["default"] == "withheld", "an older symbol for readers of later ones"


def test_audit_v5_adds_the_state_change_s_fields_all_null_by_default_and_the_recorded_decision(
        catalog: Catalog) -> None:
    audit = catalog.bus_record("audit")
    v4, v5 = ({f["name"]: f for f in audit.version(n).raw["fields"]} for n in (4, 5))
    added = {"change", "erasure_reason", "channel", "principal", "evidence_ref", "state_topic",
             "state_partition", "state_offset"}
    assert set(v5) - set(v4) == added
    assert all(v5[name]["type"][0] == "null" and v5[name]["default"] is None for name in added)
    assert [n for n in v5 if n not in added] == list(v4)
    assert v5["decision"]["type"]["symbols"] == [*v4["decision"]["type"]["symbols"], "recorded"]
    assert v5["decision"]["type"]["default"] == "withheld", "claims no delivery to old readers"
    for name in ("change", "erasure_reason"):
        enum = v5[name]["type"][1]
        assert enum["default"] in enum["symbols"], f"{name}: a default for later symbols"


def test_erasure_notice_v2_adds_population_removed_with_a_default_and_a_contract_wide_notice(
        catalog: Catalog) -> None:
    notice = catalog.bus_record("erasure_notice")
    v1, v2 = ({f["name"]: f for f in notice.version(n).raw["fields"]} for n in (1, 2))
    assert list(v1) == list(v2)
    reasons = v2["reason"]["type"]
    assert reasons["symbols"] == [*v1["reason"]["type"]["symbols"], "population_removed"]
    assert reasons["default"] in v1["reason"]["type"]["symbols"]
    assert (v2["subject_pseudonym"]["type"], v2["subject_pseudonym"]["default"]) == (
        ["null", "string"], None)


def test_contract_v2_adds_the_optional_delivery_and_nothing_else(catalog: Catalog) -> None:
    contract = catalog.bus_record("contract")
    v1, v2 = ({f["name"]: f for f in contract.version(n).raw["fields"]} for n in (1, 2))
    assert set(v2) - set(v1) == {"delivery"}
    assert (v2["delivery"]["type"][0], v2["delivery"]["default"]) == ("null", None)
    assert [n for n in v2 if n != "delivery"] == list(v1)


def test_contract_record_carries_datasets_as_a_map_of_field_lists(catalog: Catalog) -> None:
    fields = {f["name"]: f for f in catalog.bus_record("contract").latest.raw["fields"]}
    assert fields["datasets"]["type"] == {
        "type": "map",
        "values": {"type": "array", "items": "string"},
    }


def test_every_shipped_avsc_file_is_loaded(catalog: Catalog) -> None:
    root = resources.files("schemas") / "catalog"
    files = [
        f for d in root.iterdir() if d.is_dir() for f in d.iterdir() if f.name.endswith(".avsc")
    ]
    loaded = sum(len(d.versions) for d in catalog.datasets())
    loaded += sum(len(r.versions) for r in catalog.bus_records())
    assert loaded == len(files) == 26


def test_dataset_records_are_named_after_their_dataset(catalog: Catalog) -> None:
    for dataset in catalog.datasets():
        pascal = "".join(part.capitalize() for part in dataset.id.split("_"))
        for version in dataset.versions.values():
            assert version.full_name == f"fr.gouv.circulation.{dataset.id}.{pascal}"


def test_every_record_enum_and_field_has_a_one_line_doc(catalog: Catalog) -> None:
    for where, raw in _all_schemas(catalog):
        for named in _named_types(raw):
            doc = named.get("doc", "")
            assert doc.strip(), f"{where}: {named['name']} needs a doc"
            assert "\n" not in doc, f"{where}: {named['name']} doc must be one line"
        for path, field in _fields(raw):
            doc = field.get("doc", "")
            assert doc.strip(), f"{where}: field {path} needs a doc"
            assert "\n" not in doc, f"{where}: field {path} doc must be one line"


def test_nullable_fields_are_null_first_unions_defaulting_to_null(catalog: Catalog) -> None:
    for where, raw in _all_schemas(catalog):
        for path, field in _fields(raw):
            if isinstance(field["type"], list):
                assert field["type"][0] == "null", f"{where}: {path}"
                assert len(field["type"]) == 2, f"{where}: {path}"
                assert "default" in field, f"{where}: {path}"
            # Only null defaults: the codec's JSON form of a default is then unambiguous.
            assert field.get("default") is None, f"{where}: {path}"


def test_dates_and_instants_use_avro_logical_types(catalog: Catalog) -> None:
    date = {"type": "int", "logicalType": "date"}
    instant = {"type": "long", "logicalType": "timestamp-millis"}
    for where, raw in _all_schemas(catalog):
        for path, field in _fields(raw):
            name = path.rsplit(".", 1)[-1]
            types = field["type"] if isinstance(field["type"], list) else [field["type"]]
            if name.startswith("date_") or name in ("valid_from", "valid_until"):
                assert date in types, f"{where}: {path} must be a date"
            if name.endswith("_at") or name == "origin_timestamp":
                assert instant in types, f"{where}: {path} must be timestamp-millis"


def test_schema_text_is_the_json_of_the_file(catalog: Catalog) -> None:
    version = catalog.dataset("statut_eleve").latest
    assert json.loads(version.text) == version.raw
    assert version.raw["circulation"] == {
        "dataset": "statut_eleve",
        "version": 1,
        "providers": ["men"],
        "subject_kind": "person",
    }


# --- Loading checks: a misplaced or inconsistent file fails at load, naming the file. ---


def _schema(dataset: str, version: int, providers: list[str], **extra: Any) -> dict[str, Any]:
    meta = {
        "dataset": dataset,
        "version": version,
        "providers": providers,
        "subject_kind": "person",
    }
    return {
        "type": "record",
        "name": "".join(p.capitalize() for p in dataset.split("_")),
        "namespace": f"fr.gouv.circulation.{dataset}",
        "doc": "test",
        "circulation": meta | extra,
        "fields": [{"name": "a", "type": "int", "doc": "test"}],
    }


def _write(root: Path, relative: str, schema: dict[str, Any]) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema), encoding="utf-8")


def test_load_from_another_root(tmp_path: Path) -> None:
    _write(tmp_path, "cnaf/aides.v1.avsc", _schema("aides", 1, ["cnaf"]))
    _write(tmp_path, "shared/logement.v1.avsc", _schema("logement", 1, ["cnaf", "msa"]))
    catalog = Catalog.load(tmp_path)
    assert [d.id for d in catalog.datasets()] == ["aides", "logement"]
    assert catalog.topic_for("msa", "logement") == "provider.msa.logement"


@pytest.mark.parametrize(
    ("relative", "schema", "message"),
    [
        ("cnaf/aides.avsc", _schema("aides", 1, ["cnaf"]), "<name>.v<N>.avsc"),
        ("cnaf/aides.v1.avsc", _schema("aides", 2, ["cnaf"]), "version=1"),
        ("cnaf/aides.v1.avsc", _schema("autre", 1, ["cnaf"]), "dataset='aides'"),
        ("cnaf/aides.v1.avsc", _schema("aides", 1, ["msa"]), "its only provider's folder"),
        ("cnaf/aides.v1.avsc", _schema("aides", 1, ["cnaf", "msa"]), "'shared/'"),
        ("shared/aides.v1.avsc", _schema("aides", 1, ["cnaf"]), "'shared/'"),
        ("cnaf/aides.v1.avsc", _schema("aides", 1, ["cnaf"], subject_kind="cat"), "subject_kind"),
        ("cnaf/aides.v2.avsc", _schema("aides", 2, ["cnaf"]), "without gaps"),
        ("cnaf/aides.v1.avsc", {"type": "record", "name": "X"}, "'circulation'"),
        ("cnaf/aides.v1.avsc", {"type": "nope"}, "not a valid Avro schema"),
    ],
)
def test_load_refuses_a_misplaced_or_inconsistent_file(
    tmp_path: Path, relative: str, schema: dict[str, Any], message: str
) -> None:
    _write(tmp_path, relative, schema)
    with pytest.raises(CatalogError, match=message):
        Catalog.load(tmp_path)


def test_load_refuses_versions_that_disagree_on_providers(tmp_path: Path) -> None:
    _write(tmp_path, "cnaf/aides.v1.avsc", _schema("aides", 1, ["cnaf"]))
    _write(tmp_path, "msa/aides.v2.avsc", _schema("aides", 2, ["msa"]))
    with pytest.raises(CatalogError, match="aides: versions disagree"):
        Catalog.load(tmp_path)
