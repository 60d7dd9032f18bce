"""The codec: JSON form ↔ datum with field-path errors, Avro bytes, and Confluent framing."""

from __future__ import annotations

import base64
import copy
import re
from datetime import UTC, date, datetime
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.catalog import Catalog
from schemas.codec import (
    DecodeError,
    FramingError,
    ValidationError,
    decode,
    encode,
    frame,
    from_json,
    to_json,
    unframe,
)

CATALOG = Catalog.load()


def _person(nom: str, prenoms: str, naissance: str, sexe: str, usage: str | None = None) -> Any:
    return {
        "nom_naissance": nom,
        "nom_usage": usage,
        "prenoms": prenoms,
        "date_naissance": naissance,
        "sexe": sexe,
    }


# One realistic `data` document per dataset, in the published JSON form.
SAMPLES: dict[str, dict[str, Any]] = {
    "quotient_familial": {
        "quotient_familial": 812,
        "annee": 2026,
        "mois": 3,
        "allocataires": [
            _person("MARTIN", "CLAIRE ANNE", "1988-06-14", "F", usage="LEROY"),
            _person("LEROY", "THOMAS", "1986-11-02", "M"),
        ],
        "enfants": [
            _person("LEROY", "JULES", "2015-09-21", "M"),
            _person("LEROY", "INES MARIE", "2019-02-03", "F"),
        ],
    },
    "statut_etudiant": {
        "inscriptions": [
            {
                "etablissement_uai": "0751717J",
                "etablissement_nom": "Université Paris Cité",
                "statut": "inscrit",
                "regime": "formation_initiale",
                "date_debut_inscription": "2025-09-01",
                "date_fin_inscription": "2026-08-31",
                "code_commune": "75056",
            },
            {
                "etablissement_uai": "0202331K",
                "etablissement_nom": "Università di Corsica Pasquale Paoli",
                "statut": "admis",
                "regime": "formation_continue",
                "date_debut_inscription": "2026-09-01",
                "date_fin_inscription": "2027-08-31",
                "code_commune": "2B096",
            },
        ]
    },
    "statut_etudiant_boursier": {
        "est_boursier": True,
        "echelon": "0bis",
        "statut": "definitif",
        "date_debut_droits": "2025-09-01",
        "date_fin_droits": "2026-06-30",
        "ville_etudes": "Lyon",
        "montant_annuel_centimes": 145400,
    },
    "statut_eleve": {
        "est_scolarise": True,
        "est_boursier": True,
        "echelon_bourse": 3,
        "niveau": "6EME",
        "etablissement_uai": "0690123A",
        "annee_scolaire": "2026-2027",
    },
    "paiements_france_travail": {
        "paiements": [
            {"date_versement": "2026-01-05", "montant_centimes": 123456, "allocation": "ARE"},
            {"date_versement": "2026-02-04", "montant_centimes": 119870, "allocation": "ARE"},
        ]
    },
    "complementaire_sante_solidaire": {
        "statut": "beneficiaire_avec_participation",
        "date_debut_droits": "2026-01-01",
        "date_fin_droits": "2026-12-31",
    },
    "statut_demandeur_emploi": {
        "inscrit": False,
        "categorie": None,
        "date_inscription": "2024-03-11",
        "date_cessation_inscription": "2026-02-28",
    },
    "attestation_vigilance": {
        "statut": "delivree",
        "date_debut_validite": "2026-03-01",
        "date_fin_validite": "2026-08-31",
    },
    "attestation_fiscale": {
        "statut": "refusee",
        "date_delivrance": "2026-03-02",
        "date_fin_validite": "2026-12-31",
    },
    "procedure_collective": {
        "nature": "redressement_judiciaire",
        "date_jugement": "2026-02-17",
        "tribunal": "Tribunal des activités économiques de Lyon",
    },
}

HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
DEAD_LETTER_V1: dict[str, Any] = {
    "error": "data.mois: 13 is above the maximum 12",
    "origin_topic": "provider.cnaf.quotient_familial",
    "origin_partition": 3,
    "origin_offset": 1048576,
    "origin_timestamp": "2026-03-04T08:15:29.999Z",
    "failed_at": "2026-03-04T08:15:30.004Z",
    "key": "c3JfM3EyeDdrcTljMW01",
    "value": None,
    "headers": [
        {"key": "ce_type", "value": "ZnIuZ291di5jaXJjdWxhdGlvbi5xdW90aWVudF9mYW1pbGlhbA=="},
        {"key": "ce_empty", "value": None},
    ],
}
"""A dead letter as the first version wrote them (bytes and all), for the bytes conversions."""

BUS_SAMPLES: dict[str, dict[str, Any]] = {
    "audit": {
        "event_id": "0192f7a4-6a2e-7c3b-9d1e-3f5b8a2c4d6e",
        "delivery_id": None,
        "contract_id": "lyon-cantine-2026",
        "subscriber": "ville-lyon",
        "provider": "cnaf",
        "dataset": "quotient_familial",
        "subject_ref": "sr_3q2x7kq9c1m5",
        "file_day": None,
        "deliveries_deleted": None,
        "decision": "withheld",
        "reason": "no_consent",
        "decided_at": "2026-03-04T08:15:30.125Z",
        "fields_delivered": [],
        "hash_version": 5,
        "replay": False,
        "change": None,
        "erasure_reason": None,
        "channel": None,
        "principal": None,
        "evidence_ref": None,
        "state_topic": None,
        "state_partition": None,
        "state_offset": None,
        "previous_hash": "0" * 64,
        "record_hash": HASH,
    },
    "consent": {
        "contract_id": "lyon-cantine-2026",
        "subject_ref": "sr_3q2x7kq9c1m5",
        "status": "granted",
        "recorded_at": "2026-03-01T10:00:00.000Z",
        "collected_by": "21690123100011",
        "channel": "online_portal",
        "evidence_ref": "portail-famille/2026/000123",
    },
    "contract": {
        "id": "lyon-cantine-2026",
        "subscriber": "ville-lyon",
        "subscriber_siret": "21690123100011",
        "purpose": "tarification sociale de la restauration scolaire",
        "legal_basis": "RGPD 6.1.e ; article L. 114-8 du CRPA",
        "datasets": {"quotient_familial": ["quotient_familial", "annee", "mois"]},
        "consent": "opt_in",
        "population": "enrolled",
        "retention": "P1Y",
        "valid_from": "2026-01-01",
        "valid_until": None,
        "revoked": False,
        "revoked_at": None,
        "delivery": {"webhook": {"url": "https://api.lyon.example/circulation",
                                 "secret_env": "LYON_WEBHOOK_SECRET"}},
    },
    "dead_letter": {
        "error": "ValidationError: data.mois: above the maximum 12",
        "field": "data.mois",
        "origin_topic": "provider.cnaf.quotient_familial",
        "origin_partition": 3,
        "origin_offset": 1048576,
        "origin_timestamp": "2026-03-04T08:15:29.999Z",
        "failed_at": "2026-03-04T08:15:30.004Z",
        "schema_id": 12,
        "header_names": ["ce_type", "other"],
    },
    "erasure_notice": {
        "contract_id": "lyon-cantine-2026",
        "subject_pseudonym": "pp_8d1f0c2e",
        "reason": "consent_withdrawn",
        "issued_at": "2026-03-05T00:00:00.000Z",
    },
    "population": {
        "contract_id": "lyon-cantine-2026",
        "subject_ref": "sr1_" + "ab" * 32,
        "enrolled": True,
        "recorded_at": "2026-03-01T08:00:00.000Z",
    },
    "audit_checkpoint": {
        "key_id": "cd" * 32,
        "signed_at": "2026-03-01T08:00:00.000Z",
        "heads": [{"partition": 0, "offset": 41, "record_hash": "ef" * 32}],
        "signature": "AQI=",
    },
    "token": {
        "principal": "provider.cnaf",
        "token_sha256": "ab" * 32,
        "issued_at": "2026-03-01T08:00:00.000Z",
    },
}


def _schema(dataset_id: str, version: int | None = None) -> dict[str, Any]:
    dataset = CATALOG.dataset(dataset_id)
    return (dataset.latest if version is None else dataset.version(version)).parsed


def _round_trip(schema: dict[str, Any], document: dict[str, Any]) -> Any:
    payload = encode(schema, from_json(schema, document))
    return to_json(schema, decode(schema, schema, payload))


def test_every_dataset_and_bus_record_has_a_sample() -> None:
    assert set(SAMPLES) == {d.id for d in CATALOG.datasets()}
    assert set(BUS_SAMPLES) == {r.name for r in CATALOG.bus_records()}


@pytest.mark.parametrize("dataset_id", sorted(SAMPLES))
def test_dataset_sample_round_trips_through_avro_bytes(dataset_id: str) -> None:
    assert _round_trip(_schema(dataset_id), SAMPLES[dataset_id]) == SAMPLES[dataset_id]


@pytest.mark.parametrize("name", sorted(BUS_SAMPLES))
def test_bus_record_sample_round_trips_through_avro_bytes(name: str) -> None:
    schema = CATALOG.bus_record(name).latest.parsed
    assert _round_trip(schema, BUS_SAMPLES[name]) == BUS_SAMPLES[name]


def test_from_json_gives_python_dates_instants_and_bytes() -> None:
    datum = from_json(_schema("quotient_familial"), SAMPLES["quotient_familial"])
    assert datum["enfants"][1]["date_naissance"] == date(2019, 2, 3)
    dead = from_json(CATALOG.bus_record("dead_letter").version(1).parsed, DEAD_LETTER_V1)
    assert dead["failed_at"] == datetime(2026, 3, 4, 8, 15, 30, 4000, tzinfo=UTC)
    assert dead["key"] == b"sr_3q2x7kq9c1m5"


def test_instants_with_an_offset_are_normalised_to_utc() -> None:
    schema = CATALOG.bus_record("erasure_notice").latest.parsed
    notice = BUS_SAMPLES["erasure_notice"] | {"issued_at": "2026-03-05T01:30:00+01:00"}
    datum = from_json(schema, notice)
    assert datum["issued_at"] == datetime(2026, 3, 5, 0, 30, tzinfo=UTC)
    assert to_json(schema, datum)["issued_at"] == "2026-03-05T00:30:00.000Z"


def test_an_omitted_nullable_field_takes_its_null_default() -> None:
    sample = {k: v for k, v in SAMPLES["statut_eleve"].items() if k != "echelon_bourse"}
    assert from_json(_schema("statut_eleve"), sample)["echelon_bourse"] is None


# --- Schema evolution: statut_etudiant_boursier v1 <-> v2. ---

V2_SAMPLE = SAMPLES["statut_etudiant_boursier"]
V1_SAMPLE = {k: v for k, v in V2_SAMPLE.items() if k != "montant_annuel_centimes"}


def test_v1_bytes_read_with_the_v2_reader_have_no_amount() -> None:
    v1, v2 = _schema("statut_etudiant_boursier", 1), _schema("statut_etudiant_boursier", 2)
    datum = decode(v1, v2, encode(v1, from_json(v1, V1_SAMPLE)))
    assert to_json(v2, datum) == V1_SAMPLE | {"montant_annuel_centimes": None}


def test_v2_bytes_read_with_the_v1_reader_drop_the_amount() -> None:
    v1, v2 = _schema("statut_etudiant_boursier", 1), _schema("statut_etudiant_boursier", 2)
    datum = decode(v2, v1, encode(v2, from_json(v2, V2_SAMPLE)))
    assert to_json(v1, datum) == V1_SAMPLE


def test_v1_json_refuses_the_v2_field() -> None:
    with pytest.raises(ValidationError) as caught:
        from_json(_schema("statut_etudiant_boursier", 1), V2_SAMPLE)
    assert caught.value.field == "data"
    assert caught.value.reason.startswith("an unknown field (known: ")
    assert "montant_annuel_centimes" not in caught.value.reason


# --- Validation errors name the failing field. ---


def _set(document: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


def _drop(document: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != key}


QF = SAMPLES["quotient_familial"]
ETUDIANT = SAMPLES["statut_etudiant"]
INVALID = [
    ("quotient_familial", _set(QF, ["enfants", 1, "date_naissance"], "x"),
     "data.enfants[1].date_naissance", "not a date (YYYY-MM-DD)"),
    ("quotient_familial", _set(QF, ["enfants", 0, "date_naissance"], "2015-02-29"),
     "data.enfants[0].date_naissance", "not a date (YYYY-MM-DD)"),
    ("quotient_familial", _set(QF, ["allocataires", 0, "date_naissance"], "19880614"),
     "data.allocataires[0].date_naissance", "not a date (YYYY-MM-DD)"),
    ("quotient_familial", _set(QF, ["mois"], 13), "data.mois", "above the maximum 12"),
    ("quotient_familial", _set(QF, ["mois"], 0), "data.mois", "below the minimum 1"),
    ("quotient_familial", _set(QF, ["quotient_familial"], -1),
     "data.quotient_familial", "below the minimum 0"),
    ("quotient_familial", _set(QF, ["quotient_familial"], 2**31),
     "data.quotient_familial", "out of range for an Avro int"),
    ("quotient_familial", _set(QF, ["annee"], "2026"),
     "data.annee", "expected an int, got str"),
    ("quotient_familial", _set(QF, ["annee"], True),
     "data.annee", "expected an int, got bool"),
    ("quotient_familial", _set(QF, ["annee"], 2026.0),
     "data.annee", "expected an int, got float"),
    ("quotient_familial", _set(QF, ["enfants", 1, "sexe"], "X"),
     "data.enfants[1].sexe", "not one of F, M"),
    ("quotient_familial", _set(QF, ["allocataires", 1, "nir"], "1860275123456"),
     "data.allocataires[1]",
     "an unknown field (known: nom_naissance, nom_usage, prenoms, date_naissance, sexe)"),
    ("quotient_familial", _set(QF, ["enfants"], {}),
     "data.enfants", "expected an array, got dict"),
    ("quotient_familial", _set(QF, ["enfants", 0], "JULES"),
     "data.enfants[0]", "expected an object, got str"),
    ("quotient_familial", _drop(QF, "annee"), "data.annee", "missing required field"),
    ("quotient_familial", _set(QF, ["allocataires", 0, "prenoms"], None),
     "data.allocataires[0].prenoms", "expected a string, got NoneType"),
    ("statut_etudiant", _set(ETUDIANT, ["inscriptions", 1, "statut"], "diplome"),
     "data.inscriptions[1].statut", "not one of admis, inscrit"),
    ("statut_etudiant", _set(ETUDIANT, ["inscriptions", 0, "code_commune"], "7505"),
     "data.inscriptions[0].code_commune", "does not match ^[0-9][0-9AB][0-9]{3}$"),
    ("statut_etudiant_boursier", _set(V2_SAMPLE, ["echelon"], "8"),
     "data.echelon", "does not match ^(0bis|[1-7])$"),
    ("statut_etudiant_boursier", _set(V2_SAMPLE, ["montant_annuel_centimes"], -5),
     "data.montant_annuel_centimes", "below the minimum 0"),
    ("statut_eleve", _set(SAMPLES["statut_eleve"], ["echelon_bourse"], 7),
     "data.echelon_bourse", "above the maximum 6"),
    ("statut_eleve", _set(SAMPLES["statut_eleve"], ["annee_scolaire"], "2026/2027"),
     "data.annee_scolaire", "does not match ^[0-9]{4}-[0-9]{4}$"),
    ("paiements_france_travail",
     _set(SAMPLES["paiements_france_travail"], ["paiements", 1, "montant_centimes"], "1198.70"),
     "data.paiements[1].montant_centimes", "expected a long, got str"),
    ("statut_demandeur_emploi", _set(SAMPLES["statut_demandeur_emploi"], ["categorie"], "F"),
     "data.categorie", "not one of A, B, C, D, E"),
    ("statut_demandeur_emploi", _set(SAMPLES["statut_demandeur_emploi"], ["inscrit"], "false"),
     "data.inscrit", "expected a boolean, got str"),
]  # fmt: skip


@pytest.mark.parametrize(("dataset_id", "document", "field", "reason"), INVALID)
def test_invalid_document_is_refused_naming_the_field(
    dataset_id: str, document: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        from_json(_schema(dataset_id), document)
    assert (caught.value.field, caught.value.reason) == (field, reason)
    assert str(caught.value) == f"{field}: {reason}"


def _leaf(document: Any, field: str) -> Any:
    """The value at a refusal's field path, when the path reaches one."""
    target = document
    for step in re.findall(r"\.(\w+)|\[(\d+)\]", field.removeprefix("data")):
        name, index = step
        if not isinstance(target, dict | list):
            return None
        target = target[int(index)] if index else target.get(name)
    return target


@pytest.mark.parametrize(("dataset_id", "document", "field", "reason"), INVALID)
def test_no_refusal_repeats_the_offending_value(
    dataset_id: str, document: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        from_json(_schema(dataset_id), document)
    value = _leaf(document, field)
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        assert repr(value) not in str(caught.value)
        assert not re.search(rf"(?<![\w.-]){re.escape(str(value))}(?![\w.-])", reason), reason


def test_an_unknown_key_is_not_repeated_in_the_refusal() -> None:
    nir = "184127645108946"
    with pytest.raises(ValidationError) as caught:
        from_json(_schema("quotient_familial"), QF | {nir: 1})
    assert caught.value.field == "data"
    assert caught.value.reason.startswith("an unknown field (known: ")
    assert nir not in str(caught.value)


def test_the_document_itself_must_be_an_object() -> None:
    with pytest.raises(ValidationError, match=r"^data: expected an object, got list$"):
        from_json(_schema("attestation_fiscale"), [])


@pytest.mark.parametrize(
    ("instant", "reason"),
    [
        ("2026-03-04T08:15:30", "not an RFC 3339 instant"),
        ("2026-03-04", "not an RFC 3339 instant"),
        ("2026-03-04T25:00:00Z", "not an RFC 3339 instant"),
        ("2026-03-04T08:15:30.1234Z", "more precise than milliseconds"),
        (1772612130000, "not an RFC 3339 instant"),
    ],
)
def test_instants_must_be_rfc3339_with_at_most_milliseconds(instant: Any, reason: str) -> None:
    schema = CATALOG.bus_record("audit").latest.parsed
    with pytest.raises(ValidationError) as caught:
        from_json(schema, BUS_SAMPLES["audit"] | {"decided_at": instant})
    assert (caught.value.field, caught.value.reason) == ("data.decided_at", reason)


def test_extra_zero_digits_below_the_millisecond_are_accepted() -> None:
    schema = CATALOG.bus_record("audit").latest.parsed
    datum = from_json(schema, BUS_SAMPLES["audit"] | {"decided_at": "2026-03-04T08:15:30.125000Z"})
    assert datum["decided_at"] == datetime(2026, 3, 4, 8, 15, 30, 125000, tzinfo=UTC)


def test_map_values_and_bytes_are_validated_with_their_path() -> None:
    contract = CATALOG.bus_record("contract").latest.parsed
    bad_map = _set(BUS_SAMPLES["contract"], ["datasets", "quotient_familial", 1], 7)
    with pytest.raises(ValidationError, match=r"^data\.datasets\['quotient_familial'\]\[1\]: "):
        from_json(contract, bad_map)
    dead = CATALOG.bus_record("dead_letter").version(1).parsed
    bad_bytes = _set(DEAD_LETTER_V1, ["headers", 0, "value"], "not base64!")
    with pytest.raises(ValidationError, match=r"^data\.headers\[0\]\.value: not base64"):
        from_json(dead, bad_bytes)


def test_to_json_refuses_a_datum_that_does_not_fit_naming_the_field() -> None:
    schema = _schema("attestation_vigilance")
    datum = from_json(schema, SAMPLES["attestation_vigilance"])
    datum["date_fin_validite"] = "2026-08-31"
    with pytest.raises(ValidationError) as caught:
        to_json(schema, datum)
    assert caught.value.field == "data.date_fin_validite"
    naive = from_json(
        CATALOG.bus_record("erasure_notice").latest.parsed, BUS_SAMPLES["erasure_notice"]
    )
    naive["issued_at"] = datetime(2026, 3, 5)
    with pytest.raises(ValidationError, match=r"^data\.issued_at: expected an aware datetime"):
        to_json(CATALOG.bus_record("erasure_notice").latest.parsed, naive)


# --- Decoding and the Confluent wire format. ---


def test_decode_refuses_truncated_and_trailing_bytes() -> None:
    schema = _schema("procedure_collective")
    payload = encode(schema, from_json(schema, SAMPLES["procedure_collective"]))
    with pytest.raises(DecodeError, match="not a valid Avro record"):
        decode(schema, schema, payload[:-4])
    with pytest.raises(DecodeError, match="2 unread bytes after the Avro record"):
        decode(schema, schema, payload + b"\x00\x00")


def test_decode_with_a_reader_that_cannot_read_the_writer_is_a_decode_error() -> None:
    writer = _schema("attestation_fiscale")
    payload = encode(writer, from_json(writer, SAMPLES["attestation_fiscale"]))
    with pytest.raises(DecodeError, match="cannot read the writer schema"):
        decode(writer, _schema("procedure_collective"), payload)


def test_frame_layout_is_magic_byte_then_big_endian_schema_id() -> None:
    assert frame(300, b"\x02ab") == b"\x00\x00\x00\x01\x2c\x02ab"
    assert unframe(b"\x00\x00\x00\x01\x2c\x02ab") == (300, b"\x02ab")


def test_frame_round_trip_with_an_encoded_event() -> None:
    schema = _schema("quotient_familial")
    payload = encode(schema, from_json(schema, QF))
    schema_id, unframed = unframe(frame(2**31 - 1, payload))
    assert schema_id == 2**31 - 1
    assert to_json(schema, decode(schema, schema, unframed)) == QF


def test_unframe_refuses_a_wrong_magic_byte() -> None:
    with pytest.raises(FramingError, match="magic byte 0x7b, expected 0x00"):
        unframe(b'{"quotient_familial": 812}')


def test_unframe_refuses_a_value_too_short_to_hold_a_schema_id() -> None:
    with pytest.raises(FramingError, match="4 bytes is too short"):
        unframe(b"\x00\x00\x00\x01")
    assert issubclass(FramingError, DecodeError)


@pytest.mark.parametrize("schema_id", [-1, 2**31])
def test_frame_refuses_an_id_the_registry_cannot_have(schema_id: int) -> None:
    with pytest.raises(ValueError, match=f"schema id {schema_id}"):
        frame(schema_id, b"")


# --- Properties: any valid JSON document survives JSON -> datum -> bytes -> datum -> JSON. ---


def _strategy(schema: Any, named: dict[str, Any], field: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Valid JSON-form values for a (parsed) schema; ``field`` carries the constraints."""
    if isinstance(schema, list):
        return st.one_of(*(_strategy(branch, named, field) for branch in schema))
    if isinstance(schema, str) and schema in named:
        return _strategy(named[schema], named, field)
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = None if isinstance(schema, str) else schema.get("logicalType")
    if logical == "date":
        return st.dates().map(date.isoformat)
    if logical == "timestamp-millis":
        instants = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
        return instants.map(lambda d: d.isoformat(timespec="milliseconds") + "Z")
    if kind == "record":
        fields = schema["fields"]
        return st.fixed_dictionaries({f["name"]: _strategy(f["type"], named, f) for f in fields})
    if kind == "array":
        return st.lists(_strategy(schema["items"], named, {}), max_size=3)
    if kind == "map":
        return st.dictionaries(
            st.text(max_size=8), _strategy(schema["values"], named, {}), max_size=3
        )
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind in ("int", "long"):
        bits = 31 if kind == "int" else 63
        low, high = field.get("minimum", -(2**bits)), field.get("maximum", 2**bits - 1)
        return st.integers(min_value=low, max_value=high)
    if kind == "string" and "pattern" in field:
        return st.from_regex(field["pattern"], fullmatch=True)
    simple: dict[str, st.SearchStrategy[Any]] = {
        "null": st.none(),
        "boolean": st.booleans(),
        "string": st.text(max_size=20),
        "bytes": st.binary(max_size=16).map(lambda b: base64.b64encode(b).decode("ascii")),
    }
    return simple[kind]


def _documents(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    return _strategy(schema, schema["__named_schemas"], {})


ALL_SCHEMAS = [
    pytest.param(v.parsed, id=f"{d.id}.v{n}")
    for d in CATALOG.datasets()
    for n, v in d.versions.items()
] + [pytest.param(r.latest.parsed, id=f"bus.{r.name}") for r in CATALOG.bus_records()]


@pytest.mark.parametrize("schema", ALL_SCHEMAS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_valid_document_round_trips(schema: dict[str, Any], data: st.DataObject) -> None:
    document = data.draw(_documents(schema))
    datum = from_json(schema, document)
    assert decode(schema, schema, encode(schema, datum)) == datum
    assert to_json(schema, datum) == document


@settings(max_examples=60, deadline=None)
@given(document=_documents(_schema("statut_etudiant_boursier", 1)))
def test_any_v1_boursier_document_reads_with_v2(document: dict[str, Any]) -> None:
    v1, v2 = _schema("statut_etudiant_boursier", 1), _schema("statut_etudiant_boursier", 2)
    datum = decode(v1, v2, encode(v1, from_json(v1, document)))
    assert to_json(v2, datum) == document | {"montant_annuel_centimes": None}


@settings(max_examples=60, deadline=None)
@given(
    document=_documents(_schema("quotient_familial")),
    mois=st.integers().filter(lambda m: not 1 <= m <= 12),
)
def test_any_month_outside_1_to_12_is_refused(document: dict[str, Any], mois: int) -> None:
    with pytest.raises(ValidationError) as caught:
        from_json(_schema("quotient_familial"), document | {"mois": mois})
    assert caught.value.field == "data.mois"


@pytest.mark.parametrize("schema", ALL_SCHEMAS)
@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_decode_or_validation_errors(
    schema: dict[str, Any], payload: bytes
) -> None:
    """The router dead-letters what raises DecodeError or ValidationError: nothing else escapes.

    Bytes can be valid Avro yet break a constraint (a month 13): to_json still refuses those.
    """
    try:
        document = to_json(schema, decode(schema, schema, payload))
    except (DecodeError, ValidationError):
        return
    assert from_json(schema, document) == decode(schema, schema, payload)


@pytest.mark.parametrize("nir", ["184127645108946", "1 84 12 76 451 089 46", "294042A24778932"])
def test_refusals_never_repeat_an_identifier_typed_in_the_wrong_field(nir: str) -> None:
    sample = dict(SAMPLES["statut_etudiant_boursier"]) | {"echelon": nir}
    with pytest.raises(ValidationError) as caught:
        from_json(_schema("statut_etudiant_boursier"), sample)
    assert caught.value.field == "data.echelon"
    assert nir not in str(caught.value)
    assert nir.replace(" ", "") not in str(caught.value)


@pytest.mark.parametrize("schema_id", [2**31, 2**32 - 1])
def test_unframe_refuses_an_id_the_registry_cannot_have(schema_id: int) -> None:
    with pytest.raises(FramingError, match="beyond any registry id"):
        unframe(b"\x00" + schema_id.to_bytes(4, "big") + b"\x02")


def test_an_integer_beyond_any_double_is_refused_by_field() -> None:
    """JSON integers have no bound: float() of one past 1.8e308 raised OverflowError, which no
    caller turns into a refusal."""
    schema = fastavro.parse_schema({"type": "record", "name": "Mesure",
                                    "fields": [{"name": "valeur", "type": "double"}]})
    with pytest.raises(ValidationError, match="out of range for an Avro double") as refused:
        from_json(schema, {"valeur": 10**400})
    assert refused.value.field == "data.valeur"
    assert from_json(schema, {"valeur": 10**300}) == {"valeur": 1e300}
