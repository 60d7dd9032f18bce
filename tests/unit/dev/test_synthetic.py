"""Synthetic published events: reproducible, valid subjects, exactly the contract's fields."""

from __future__ import annotations

import json
import random
import re
import statistics
import uuid
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.identifiers import InvalidIdentifier, validate_nir, validate_siren
from streams.dev.synthetic import (
    BASE_TIME,
    COMPANY_DATASETS,
    DATASETS,
    PERSON_DATASETS,
    REFERENCE_DATE,
    Person,
    companies,
    generate,
    people,
    person_from_nir,
)
from streams.dev.synthetic.places import uai

IDENTITY = {"nom_naissance", "nom_usage", "prenoms", "date_naissance", "sexe"}

# The contract, written out independently of the generator: dataset -> field -> nested fields.
CONTRACT: dict[str, dict[str, set[str] | None]] = {
    "quotient_familial": {
        "quotient_familial": None,
        "annee": None,
        "mois": None,
        "allocataires": IDENTITY,
        "enfants": IDENTITY,
    },
    "statut_etudiant": {
        "inscriptions": {
            "etablissement_uai",
            "etablissement_nom",
            "statut",
            "regime",
            "date_debut_inscription",
            "date_fin_inscription",
            "code_commune",
        }
    },
    "statut_etudiant_boursier": dict.fromkeys(
        [
            "est_boursier",
            "echelon",
            "statut",
            "date_debut_droits",
            "date_fin_droits",
            "ville_etudes",
        ]
    ),
    "statut_eleve": dict.fromkeys(
        [
            "est_scolarise",
            "est_boursier",
            "echelon_bourse",
            "niveau",
            "etablissement_uai",
            "annee_scolaire",
        ]
    ),
    "paiements_france_travail": {"paiements": {"date_versement", "montant_centimes", "allocation"}},
    "complementaire_sante_solidaire": dict.fromkeys(
        ["statut", "date_debut_droits", "date_fin_droits"]
    ),
    "statut_demandeur_emploi": dict.fromkeys(
        ["inscrit", "categorie", "date_inscription", "date_cessation_inscription"]
    ),
    "attestation_vigilance": dict.fromkeys(["statut", "date_debut_validite", "date_fin_validite"]),
    "attestation_fiscale": dict.fromkeys(["statut", "date_delivrance", "date_fin_validite"]),
    "procedure_collective": dict.fromkeys(["nature", "date_jugement", "tribunal"]),
}
NULLABLE = {
    "quotient_familial": {"nom_usage"},
    "statut_etudiant_boursier": {"echelon"},
    "statut_eleve": {"echelon_bourse"},
    "complementaire_sante_solidaire": {"date_debut_droits", "date_fin_droits"},
    "statut_demandeur_emploi": {"categorie", "date_inscription", "date_cessation_inscription"},
}
PROVIDERS = {
    "quotient_familial": {"cnaf", "msa"},
    "statut_etudiant": {"mesr"},
    "statut_etudiant_boursier": {"cnous"},
    "statut_eleve": {"men"},
    "paiements_france_travail": {"france_travail"},
    "complementaire_sante_solidaire": {"cnam"},
    "statut_demandeur_emploi": {"france_travail"},
    "attestation_vigilance": {"urssaf"},
    "attestation_fiscale": {"dgfip"},
    "procedure_collective": {"infogreffe"},
}
ENVELOPE = {"specversion", "id", "source", "type", "subject", "time", "data"}
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
UAI = re.compile(r"\d{7}[A-Z]")


def sample(dataset: str, count: int = 300, seed: int = 7, **kwargs: Any) -> list[dict[str, Any]]:
    return list(generate(dataset, count, seed, **kwargs))


def walk(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every (field, value) of a payload, nested records included."""
    pairs = []
    for key, value in data.items():
        pairs.append((key, value))
        if isinstance(value, list):
            for item in value:
                pairs.extend(walk(item))
    return pairs


def parse_day(value: str) -> date:
    assert ISO_DATE.fullmatch(value), value
    return date.fromisoformat(value)


def uai_letter_ok(value: str) -> bool:
    return bool(UAI.fullmatch(value)) and "ABCDEFGHJKLMNPRSTUVWXYZ"[int(value[:7]) % 23] == value[7]


# --- catalog -----------------------------------------------------------------------------------


def test_catalog_lists_every_dataset_and_its_providers() -> None:
    assert {name: set(providers) for name, providers in DATASETS.items()} == PROVIDERS
    assert set(PERSON_DATASETS) | set(COMPANY_DATASETS) == set(CONTRACT)
    assert not PERSON_DATASETS & COMPANY_DATASETS
    assert {
        "attestation_vigilance",
        "attestation_fiscale",
        "procedure_collective",
    } == COMPANY_DATASETS


# --- determinism -------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", sorted(CONTRACT))
def test_same_seed_same_events_other_seed_other_events(dataset: str) -> None:
    assert sample(dataset, 40, seed=1) == sample(dataset, 40, seed=1)
    assert sample(dataset, 40, seed=1) != sample(dataset, 40, seed=2)


@pytest.mark.parametrize("dataset", sorted(CONTRACT))
def test_prefix_does_not_depend_on_count(dataset: str) -> None:
    assert sample(dataset, 10, seed=3) == sample(dataset, 50, seed=3)[:10]


@pytest.mark.parametrize("dataset", sorted(CONTRACT))
def test_global_random_is_neither_used_nor_disturbed(dataset: str) -> None:
    random.seed(1)
    first = sample(dataset, 30)
    state = random.getstate()
    random.seed(2)
    second = sample(dataset, 30)
    assert first == second
    random.setstate(state)
    sample(dataset, 30)
    assert random.getstate() == state


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(sorted(CONTRACT)), st.integers(-(2**63), 2**63))
def test_any_seed_is_reproducible(dataset: str, seed: int) -> None:
    assert sample(dataset, 5, seed) == sample(dataset, 5, seed)


# --- envelope and subjects ---------------------------------------------------------------------


@pytest.mark.parametrize("dataset", sorted(CONTRACT))
def test_envelope_is_a_cloudevent_with_a_valid_subject(dataset: str) -> None:
    events = sample(dataset)
    previous = BASE_TIME
    for event in events:
        assert set(event) == ENVELOPE
        assert event["specversion"] == "1.0"
        assert event["type"] == dataset
        assert event["source"] in PROVIDERS[dataset]
        assert uuid.UUID(event["id"]).version == 4
        assert event["time"].endswith("Z")
        moment = datetime.fromisoformat(event["time"])
        assert moment.utcoffset() == timedelta(0)
        assert previous <= moment < BASE_TIME + timedelta(days=1)
        previous = moment
        if dataset in PERSON_DATASETS:
            assert validate_nir(event["subject"]) == event["subject"]
        else:
            assert validate_siren(event["subject"]) == event["subject"]
        json.dumps(event)  # plain JSON: no date objects left in
    assert len({event["id"] for event in events}) == len(events)


def test_default_sources_follow_usual_proportions() -> None:
    sources = Counter(event["source"] for event in sample("quotient_familial", 3000))
    assert 0.85 < sources["cnaf"] / 3000 < 0.95
    assert sources["msa"] > 0


def test_provider_can_be_fixed_but_must_publish_the_dataset() -> None:
    assert {e["source"] for e in sample("quotient_familial", 200, provider="msa")} == {"msa"}
    with pytest.raises(ValueError, match="'cnous' does not publish 'quotient_familial'"):
        generate("quotient_familial", 1, 1, provider="cnous")


@pytest.mark.parametrize(
    ("dataset", "count", "message"),
    [("quotient", 1, "unknown dataset 'quotient'"), ("statut_eleve", -1, "count must be >= 0")],
)
def test_bad_arguments_are_refused_at_call_time(dataset: str, count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(dataset, count, 1)


# --- the data contract -------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", sorted(CONTRACT))
def test_data_has_exactly_the_contract_fields(dataset: str) -> None:
    contract = CONTRACT[dataset]
    for event in sample(dataset):
        data = event["data"]
        assert set(data) == set(contract)
        for field, nested in contract.items():
            if nested is not None:
                assert isinstance(data[field], list)
                for item in data[field]:
                    assert set(item) == nested


@pytest.mark.parametrize("dataset", sorted(CONTRACT))
def test_dates_parse_and_only_nullable_fields_are_null(dataset: str) -> None:
    nullable = NULLABLE.get(dataset, set())
    seen_null = set()
    for event in sample(dataset):
        for field, value in walk(event["data"]):
            if value is None:
                assert field in nullable, field
                seen_null.add(field)
            elif field.startswith("date_"):
                parse_day(value)
    assert seen_null == nullable  # every nullable field is exercised


def test_quotient_familial_values() -> None:
    events = sample("quotient_familial", 3000)
    amounts = [e["data"]["quotient_familial"] for e in events]
    assert all(isinstance(a, int) and 0 <= a <= 3500 for a in amounts)
    assert 650 <= statistics.median(amounts) <= 850
    assert 0 in amounts
    assert max(amounts) > 2000  # a long tail
    for event in events:
        data = event["data"]
        assert 1 <= len(data["allocataires"]) <= 2
        assert 0 <= len(data["enfants"]) <= 5
        assert 1 <= data["mois"] <= 12
        assert (data["annee"], data["mois"]) == (2026, 9)
        for person in data["allocataires"] + data["enfants"]:
            assert person["sexe"] in {"F", "M"}
            assert person["prenoms"]
            assert person["nom_naissance"]
            assert parse_day(person["date_naissance"]) <= REFERENCE_DATE
    given_names = [p["prenoms"] for e in events for p in e["data"]["allocataires"]]
    assert any(" " in names for names in given_names)  # several prénoms, "Marie Claire"
    assert any(p["nom_usage"] for e in events for p in e["data"]["allocataires"])


def test_quotient_familial_first_allocataire_is_the_subject() -> None:
    for event in sample("quotient_familial"):
        nir, first = event["subject"], event["data"]["allocataires"][0]
        born = parse_day(first["date_naissance"])
        assert nir[0] == ("2" if first["sexe"] == "F" else "1")
        assert nir[1:5] == f"{born.year % 100:02d}{born.month:02d}"
        for child in event["data"]["enfants"]:
            assert parse_day(child["date_naissance"]) > born


def test_statut_etudiant_values() -> None:
    for event in sample("statut_etudiant"):
        inscriptions = event["data"]["inscriptions"]
        assert 1 <= len(inscriptions) <= 2
        for item in inscriptions:
            assert uai_letter_ok(item["etablissement_uai"])
            assert item["etablissement_nom"].startswith(("Université", "Sorbonne", "Aix", "Nantes"))
            assert item["statut"] in {"admis", "inscrit"}
            assert item["regime"] in {"formation_initiale", "formation_continue"}
            assert re.fullmatch(r"\d{5}|2[AB]\d{3}", item["code_commune"])
            start = parse_day(item["date_debut_inscription"])
            assert start < parse_day(item["date_fin_inscription"])


def test_statut_etudiant_boursier_values() -> None:
    echelons = set()
    for event in sample("statut_etudiant_boursier", 1000):
        data = event["data"]
        assert (data["echelon"] is None) == (not data["est_boursier"])
        echelons.add(data["echelon"])
        assert data["statut"] in {"definitif", "provisoire"}
        assert parse_day(data["date_debut_droits"]) < parse_day(data["date_fin_droits"])
        assert isinstance(data["ville_etudes"], str)
        assert data["ville_etudes"]
    assert echelons == {None, "0bis", "1", "2", "3", "4", "5", "6", "7"}


def test_statut_eleve_values_follow_age() -> None:
    levels = ["6e", "5e", "4e", "3e", "seconde", "premiere", "terminale"]
    for event in sample("statut_eleve", 1000):
        data = event["data"]
        assert data["niveau"] in levels
        assert data["annee_scolaire"] == "2026-2027"
        assert uai_letter_ok(data["etablissement_uai"])
        if data["est_boursier"]:
            assert data["est_scolarise"]
            assert 1 <= data["echelon_bourse"] <= 6
        else:
            assert data["echelon_bourse"] is None
        # 6e the year one turns 11, possibly a year behind
        birth_year = 2000 + int(event["subject"][1:3])
        expected = min(max(2026 - birth_year - 11, 0), 6)
        assert levels.index(data["niveau"]) in {expected, max(expected - 1, 0)}


def test_paiements_france_travail_values() -> None:
    for event in sample("paiements_france_travail"):
        payments = event["data"]["paiements"]
        assert 1 <= len(payments) <= 4
        moment = datetime.fromisoformat(event["time"]).date()
        days = [parse_day(p["date_versement"]) for p in payments]
        assert days == sorted(days)
        assert days[-1] <= moment
        for payment in payments:
            assert payment["allocation"] in {"ARE", "ASS", "AREF"}
            assert isinstance(payment["montant_centimes"], int)
            assert 10_000 < payment["montant_centimes"] < 1_000_000
        assert len({p["allocation"] for p in payments}) == 1


def test_complementaire_sante_solidaire_values() -> None:
    statuses = set()
    for event in sample("complementaire_sante_solidaire"):
        data = event["data"]
        statuses.add(data["statut"])
        if data["statut"] == "non_beneficiaire":
            assert data["date_debut_droits"] is None
            assert data["date_fin_droits"] is None
        else:
            start, end = parse_day(data["date_debut_droits"]), parse_day(data["date_fin_droits"])
            assert end == date(start.year + 1, start.month, 1) - timedelta(days=1)
    assert statuses == {
        "beneficiaire_sans_participation",
        "beneficiaire_avec_participation",
        "non_beneficiaire",
    }


def test_statut_demandeur_emploi_is_consistent() -> None:
    for event in sample("statut_demandeur_emploi", 1000):
        data = event["data"]
        moment = datetime.fromisoformat(event["time"]).date()
        if data["inscrit"]:
            assert data["categorie"] in set("ABCDE")
            assert parse_day(data["date_inscription"]) <= moment
            assert data["date_cessation_inscription"] is None
        else:
            assert data["categorie"] is None
            if data["date_cessation_inscription"] is not None:
                registered = parse_day(data["date_inscription"])
                assert registered <= parse_day(data["date_cessation_inscription"]) <= moment
            else:
                assert data["date_inscription"] is None


@pytest.mark.parametrize(
    ("dataset", "start_field"),
    [("attestation_vigilance", "date_debut_validite"), ("attestation_fiscale", "date_delivrance")],
)
def test_attestations_are_valid_six_months(dataset: str, start_field: str) -> None:
    statuses = set()
    for event in sample(dataset):
        data = event["data"]
        statuses.add(data["statut"])
        start, end = parse_day(data[start_field]), parse_day(data["date_fin_validite"])
        months = (end.year - start.year) * 12 + end.month - start.month
        assert months == 6
        assert end.day <= start.day
    assert statuses == {"delivree", "refusee"}


def test_procedure_collective_values() -> None:
    natures = Counter()
    for event in sample("procedure_collective", 1000):
        data = event["data"]
        natures[data["nature"]] += 1
        assert data["tribunal"].startswith("Tribunal ")
        assert parse_day(data["date_jugement"]) <= datetime.fromisoformat(event["time"]).date()
    assert set(natures) == {
        "sauvegarde",
        "redressement_judiciaire",
        "liquidation_judiciaire",
        "cloture",
    }
    assert natures.most_common(1)[0][0] == "liquidation_judiciaire"


def test_uai_check_letter() -> None:
    assert uai("0751717") == "0751717J"
    with pytest.raises(ValueError, match="7 digits"):
        uai("075171")


# --- populations -------------------------------------------------------------------------------


def test_people_are_distinct_valid_consistent_and_reproducible() -> None:
    population = people(11, 2000)
    assert population == people(11, 2000)
    assert population != people(12, 2000)
    assert len({p.nir for p in population}) == 2000
    departments = Counter()
    for person in population:
        assert validate_nir(person.nir) == person.nir
        assert person.nir[0] == ("2" if person.sexe == "F" else "1")
        born = person.date_naissance
        assert person.nir[1:5] == f"{born.year % 100:02d}{born.month:02d}"
        assert 18 <= person.age() <= 75
        place = person.lieu_naissance
        corsican_before_1976 = place[:2] in {"2A", "2B"} and born.year < 1976
        assert person.nir[5:10] == ("20" + place[2:] if corsican_before_1976 else place)
        departments[person.nir[5:7]] += 1
    assert departments["2A"] + departments["2B"] > 0  # Corsican births after 1975
    assert departments["99"] > 0
    assert departments["97"] > 0


def test_people_age_bounds() -> None:
    assert all(11 <= p.age() <= 18 for p in people(1, 300, min_age=11, max_age=18))
    with pytest.raises(ValueError, match="min_age"):
        people(1, 1, min_age=30, max_age=20)


def test_person_from_nir_is_stable_and_agrees_with_the_nir() -> None:
    for person in people(5, 200):
        derived = person_from_nir(person.nir)
        assert derived == person_from_nir(person.nir)
        assert (derived.nir, derived.sexe) == (person.nir, person.sexe)
        assert derived.date_naissance.year % 100 == person.date_naissance.year % 100
        assert derived.date_naissance.month == person.date_naissance.month
        assert derived.date_naissance <= REFERENCE_DATE


def test_companies_are_distinct_valid_and_reproducible() -> None:
    sirens = companies(3, 500)
    assert sirens == companies(3, 500) != companies(4, 500)
    assert len(set(sirens)) == 500
    assert all(validate_siren(s) == s for s in sirens)


# --- drawing subjects from a given population ---------------------------------------------------


def test_events_can_concern_a_given_population() -> None:
    population = people(21, 5)
    events = sample("quotient_familial", 100, subjects=population)
    by_nir = {p.nir: p for p in population}
    assert {e["subject"] for e in events} == set(by_nir)  # all drawn, nothing else
    for event in events:
        assert event["data"]["allocataires"][0] == by_nir[event["subject"]].identity()


def test_bare_nirs_always_describe_the_same_person() -> None:
    nirs = [p.nir for p in people(8, 3)]
    first = sample("quotient_familial", 60, subjects=nirs)
    second = sample("quotient_familial", 60, seed=99, subjects=nirs)
    identities: dict[str, dict[str, Any]] = {}
    for event in first + second:
        allocataire = event["data"]["allocataires"][0]
        assert identities.setdefault(event["subject"], allocataire) == allocataire
    assert set(identities) == set(nirs)


def test_several_datasets_share_one_population() -> None:
    population = people(2, 10, min_age=18, max_age=25)
    students = {e["subject"] for e in sample("statut_etudiant", 50, subjects=population)}
    bursaries = {e["subject"] for e in sample("statut_etudiant_boursier", 50, subjects=population)}
    assert students <= {p.nir for p in population}
    assert students & bursaries


def test_company_events_draw_from_given_sirens() -> None:
    sirens = companies(1, 4)
    assert {e["subject"] for e in sample("procedure_collective", 80, subjects=sirens)} == set(
        sirens
    )


@pytest.mark.parametrize(
    ("dataset", "subjects", "error", "message"),
    [
        (
            "quotient_familial",
            ["184127645108946", "184127645108912"],
            InvalidIdentifier,
            r"subjects\[1\]",
        ),
        ("attestation_fiscale", ["732829320", "123456789"], InvalidIdentifier, r"subjects\[1\]"),
        ("attestation_fiscale", people(1, 1), TypeError, "take SIRENs"),
        ("statut_eleve", [], ValueError, "must not be empty"),
        ("statut_eleve", "184127645108946", TypeError, "not one string"),
    ],
)
def test_given_subjects_are_checked(
    dataset: str, subjects: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        generate(dataset, 1, 1, subjects=subjects)
    assert "184127645108912" not in str(caught.value)


def test_person_objects_are_accepted_as_given() -> None:
    custom = Person(
        nir="184127645108946",
        sexe="M",
        nom_naissance="Santoni",
        nom_usage=None,
        prenoms="Jean-Baptiste Paul",
        date_naissance=date(1984, 12, 3),
        lieu_naissance="76451",
    )
    event = next(generate("quotient_familial", 1, 1, subjects=[custom]))
    assert event["subject"] == custom.nir
    assert event["data"]["allocataires"][0]["prenoms"] == "Jean-Baptiste Paul"
