"""The catalog's datasets and how to draw a realistic ``data`` payload for each.

The field names of every payload are a contract shared with the Avro schemas of the catalog;
values follow the distributions an operator would see in production closely enough for demos and
load tests (a log-normal quotient familial, mostly 0bis-level bursaries, rare refusals...). Every
builder draws only from the ``random.Random`` it is given, so output is reproducible.
"""

from __future__ import annotations

import calendar
import dataclasses
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from types import MappingProxyType
from typing import Any, Final

from streams.dev.synthetic.names import Sexe
from streams.dev.synthetic.places import COURTS, UNIVERSITIES, school_uai
from streams.dev.synthetic.population import Person, draw_person

Data = dict[str, Any]
PersonBuilder = Callable[[random.Random, Person, date], Data]
CompanyBuilder = Callable[[random.Random, date], Data]


@dataclass(frozen=True, slots=True)
class PersonDataset:
    """A dataset about persons: who publishes it, how old its subjects are, its payload."""

    providers: tuple[str, ...]
    provider_weights: tuple[float, ...]
    ages: tuple[int, int]
    build: PersonBuilder


@dataclass(frozen=True, slots=True)
class CompanyDataset:
    """A dataset about companies: who publishes it and its payload."""

    providers: tuple[str, ...]
    provider_weights: tuple[float, ...]
    build: CompanyBuilder


def _add_months(day: date, months: int) -> date:
    """The same day ``months`` later (clamped to the month's end), as validity periods count."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _academic_year(when: date) -> int:
    """The first calendar year of the school/academic year ``when`` falls in."""
    return when.year if when.month >= 9 else when.year - 1


def _days_back(rng: random.Random, when: date, low: int, high: int) -> date:
    """A day between ``high`` and ``low`` days before ``when``."""
    return when - timedelta(days=rng.randint(low, high))


# --- person datasets --------------------------------------------------------------------------


def _quotient_familial(rng: random.Random, person: Person, when: date) -> Data:
    """CNAF/MSA quotient familial: log-normal around 750 EUR, some households at 0."""
    if rng.random() < 0.03:
        amount = 0
    else:
        amount = 3201
        while amount > 3200:  # redraw rather than clip, so no spike at the cap
            amount = round(rng.lognormvariate(math.log(770), 0.55))
    household = [person]
    if rng.random() < 0.55:
        household.append(_partner(rng, person))
    family_name = next((p.nom_naissance for p in household if p.sexe == "M"), person.nom_naissance)
    youngest_parent = min(p.age() for p in household)
    count = rng.choices(range(6), weights=(25, 30, 28, 12, 4, 1))[0]
    children = [
        _child(rng, family_name, youngest_parent)
        for _ in range(count if youngest_parent >= 18 else 0)
    ]
    return {
        "quotient_familial": amount,
        "annee": when.year,
        "mois": when.month,
        "allocataires": [p.identity() for p in household],
        "enfants": [c.identity() for c in children],
    }


def _partner(rng: random.Random, person: Person) -> Person:
    """A co-allocataire of about the same age, mostly of the other sex, sharing a name."""
    other: Sexe = "M" if person.sexe == "F" else "F"
    sexe = other if rng.random() < 0.95 else person.sexe
    age = max(18, person.age() + round(rng.gauss(0, 3)))
    partner = draw_person(rng, age, age, sexe)
    if sexe == "F" and person.sexe == "M" and rng.random() < 0.5:
        return dataclasses.replace(partner, nom_usage=person.nom_naissance)
    if sexe == "M" and person.sexe == "F" and person.nom_usage:
        return dataclasses.replace(partner, nom_naissance=person.nom_usage)
    return partner


def _child(rng: random.Random, family_name: str, parent_age: int) -> Person:
    """A dependent child, born when the youngest parent was at least 18."""
    child = draw_person(rng, 0, min(20, parent_age - 18))
    return dataclasses.replace(child, nom_naissance=family_name, nom_usage=None)


def _statut_etudiant(rng: random.Random, _person: Person, when: date) -> Data:
    """MESR enrolments: one establishment, sometimes two (double cursus)."""
    year = _academic_year(when)
    count = 1 if rng.random() < 0.88 else 2
    inscriptions = [
        {
            "etablissement_uai": university.uai,
            "etablissement_nom": university.nom,
            "statut": "inscrit" if rng.random() < 0.85 else "admis",
            "regime": "formation_initiale" if rng.random() < 0.92 else "formation_continue",
            "date_debut_inscription": (
                date(year, 9, 1) + timedelta(rng.randint(0, 30))
            ).isoformat(),
            "date_fin_inscription": date(year + 1, 8, 31).isoformat(),
            "code_commune": university.code_commune,
        }
        for university in rng.sample(UNIVERSITIES, count)
    ]
    return {"inscriptions": inscriptions}


_ECHELONS: Final = ("0bis", "1", "2", "3", "4", "5", "6", "7")
_ECHELON_WEIGHTS: Final = (30, 12, 8, 8, 9, 10, 13, 10)


def _statut_etudiant_boursier(rng: random.Random, _person: Person, when: date) -> Data:
    """CNOUS bursary status for the academic year (paid September to June)."""
    year = _academic_year(when)
    boursier = rng.random() < 0.85
    return {
        "est_boursier": boursier,
        "echelon": rng.choices(_ECHELONS, weights=_ECHELON_WEIGHTS)[0] if boursier else None,
        "statut": "definitif" if rng.random() < 0.8 else "provisoire",
        "date_debut_droits": date(year, 9, 1).isoformat(),
        "date_fin_droits": date(year + 1, 6, 30).isoformat(),
        "ville_etudes": rng.choice(UNIVERSITIES).ville,
    }


_SCHOOL_LEVELS: Final = ("6e", "5e", "4e", "3e", "seconde", "premiere", "terminale")


def _statut_eleve(rng: random.Random, person: Person, when: date) -> Data:
    """MEN pupil status: the level follows the birth year (some pupils repeat a year)."""
    year = _academic_year(when)
    level = year - person.date_naissance.year - 11  # 6e the year one turns 11
    if rng.random() < 0.12:
        level -= 1
    level = min(max(level, 0), len(_SCHOOL_LEVELS) - 1)
    schooled = rng.random() < 0.98
    boursier = schooled and rng.random() < 0.27
    top_echelon = 3 if level <= 3 else 6  # collège bursaries have 3 échelons, lycée 6
    return {
        "est_scolarise": schooled,
        "est_boursier": boursier,
        "echelon_bourse": rng.randint(1, top_echelon) if boursier else None,
        "niveau": _SCHOOL_LEVELS[level],
        "etablissement_uai": school_uai(rng),
        "annee_scolaire": f"{year}-{year + 1}",
    }


_ALLOCATIONS: Final = ("ARE", "ASS", "AREF")


def _paiements_france_travail(rng: random.Random, _person: Person, when: date) -> Data:
    """Monthly France Travail payments already made, one benefit per person."""
    allocation = rng.choices(_ALLOCATIONS, weights=(78, 12, 10))[0]
    if allocation == "ASS":
        daily = 1949
    else:
        daily = min(max(round(rng.lognormvariate(math.log(4200), 0.35)), 3197), 29000)
    count = rng.choices((1, 2, 3, 4), weights=(40, 25, 20, 15))[0]
    # payments go out on the 1st-5th: this month's only once the 5th has passed
    latest = _add_months(date(when.year, when.month, 1), 0 if when.day > 5 else -1)
    payments = []
    for back in range(count - 1, -1, -1):
        paid = _add_months(latest, -back)
        month_paid_for = _add_months(paid, -1)
        days = calendar.monthrange(month_paid_for.year, month_paid_for.month)[1]
        share = 1.0 if rng.random() < 0.85 else rng.uniform(0.4, 1.0)  # reduced activity
        payments.append(
            {
                "date_versement": paid.replace(day=rng.randint(1, 5)).isoformat(),
                "montant_centimes": round(daily * days * share),
                "allocation": allocation,
            }
        )
    return {"paiements": payments}


_C2S_STATUSES: Final = (
    "beneficiaire_sans_participation",
    "beneficiaire_avec_participation",
    "non_beneficiaire",
)


def _complementaire_sante_solidaire(rng: random.Random, _person: Person, when: date) -> Data:
    """CNAM C2S decision: rights for twelve months from the first of a month."""
    statut = rng.choices(_C2S_STATUSES, weights=(55, 30, 15))[0]
    if statut == "non_beneficiaire":
        return {"statut": statut, "date_debut_droits": None, "date_fin_droits": None}
    start = _add_months(date(when.year, when.month, 1), rng.randint(0, 1))
    return {
        "statut": statut,
        "date_debut_droits": start.isoformat(),
        "date_fin_droits": (_add_months(start, 12) - timedelta(days=1)).isoformat(),
    }


def _statut_demandeur_emploi(rng: random.Random, person: Person, when: date) -> Data:
    """France Travail register status; the dates agree with ``inscrit``."""
    earliest = _add_months(person.date_naissance, 16 * 12)
    if rng.random() < 0.7:
        return {
            "inscrit": True,
            "categorie": rng.choices("ABCDE", weights=(55, 12, 20, 6, 7))[0],
            "date_inscription": min(max(_days_back(rng, when, 1, 900), earliest), when).isoformat(),
            "date_cessation_inscription": None,
        }
    if rng.random() < 0.15:  # never registered
        return {
            "inscrit": False,
            "categorie": None,
            "date_inscription": None,
            "date_cessation_inscription": None,
        }
    registered = min(max(_days_back(rng, when, 60, 1500), earliest), when)
    left = registered + timedelta(days=rng.randint(1, max(1, (when - registered).days)))
    return {
        "inscrit": False,
        "categorie": None,
        "date_inscription": registered.isoformat(),
        "date_cessation_inscription": min(left, when).isoformat(),
    }


# --- company datasets -------------------------------------------------------------------------


def _attestation_vigilance(rng: random.Random, when: date) -> Data:
    """URSSAF vigilance certificate, valid six months."""
    start = _days_back(rng, when, 0, 10)
    return {
        "statut": "delivree" if rng.random() < 0.92 else "refusee",
        "date_debut_validite": start.isoformat(),
        "date_fin_validite": _add_months(start, 6).isoformat(),
    }


def _attestation_fiscale(rng: random.Random, when: date) -> Data:
    """DGFiP tax-compliance certificate; buyers accept it for six months."""
    issued = _days_back(rng, when, 0, 10)
    return {
        "statut": "delivree" if rng.random() < 0.9 else "refusee",
        "date_delivrance": issued.isoformat(),
        "date_fin_validite": _add_months(issued, 6).isoformat(),
    }


_NATURES: Final = ("sauvegarde", "redressement_judiciaire", "liquidation_judiciaire", "cloture")


def _procedure_collective(rng: random.Random, when: date) -> Data:
    """Infogreffe insolvency judgment: liquidations dominate, as in the BODACC."""
    return {
        "nature": rng.choices(_NATURES, weights=(5, 25, 65, 5))[0],
        "date_jugement": _days_back(rng, when, 0, 20).isoformat(),
        "tribunal": rng.choice(COURTS),
    }


PERSON_SPECS: Final[Mapping[str, PersonDataset]] = MappingProxyType(
    {
        "quotient_familial": PersonDataset(
            ("cnaf", "msa"), (0.9, 0.1), (20, 70), _quotient_familial
        ),
        "statut_etudiant": PersonDataset(("mesr",), (1.0,), (18, 28), _statut_etudiant),
        "statut_etudiant_boursier": PersonDataset(
            ("cnous",), (1.0,), (18, 28), _statut_etudiant_boursier
        ),
        "statut_eleve": PersonDataset(("men",), (1.0,), (11, 18), _statut_eleve),
        "paiements_france_travail": PersonDataset(
            ("france_travail",), (1.0,), (18, 64), _paiements_france_travail
        ),
        "complementaire_sante_solidaire": PersonDataset(
            ("cnam",), (1.0,), (18, 80), _complementaire_sante_solidaire
        ),
        "statut_demandeur_emploi": PersonDataset(
            ("france_travail",), (1.0,), (18, 64), _statut_demandeur_emploi
        ),
    }
)

COMPANY_SPECS: Final[Mapping[str, CompanyDataset]] = MappingProxyType(
    {
        "attestation_vigilance": CompanyDataset(("urssaf",), (1.0,), _attestation_vigilance),
        "attestation_fiscale": CompanyDataset(("dgfip",), (1.0,), _attestation_fiscale),
        "procedure_collective": CompanyDataset(("infogreffe",), (1.0,), _procedure_collective),
    }
)

#: dataset id -> the providers that publish it (the first one publishes most of it).
DATASETS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {name: spec.providers for name, spec in PERSON_SPECS.items()}
    | {name: spec.providers for name, spec in COMPANY_SPECS.items()}
)
PERSON_DATASETS: Final = frozenset(PERSON_SPECS)
COMPANY_DATASETS: Final = frozenset(COMPANY_SPECS)
