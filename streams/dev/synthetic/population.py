"""Synthetic persons and companies whose identifiers validate.

A :class:`Person`'s NIR agrees with what it encodes: sex, year and month of birth, birthplace
(Corsican births after 1975 under 2A/2B, before under the old département 20; overseas births
under 97x; births abroad under 99 + country). A reusable population (:func:`people`,
:func:`companies`) lets tests and demos publish several events about the same subjects.
"""

from __future__ import annotations

import calendar
import random
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from schemas.identifiers import complete_nir, complete_siren, validate_nir
from streams.dev.synthetic.names import SEXES, Sexe, given_names, surname
from streams.dev.synthetic.places import birthplace

#: The day synthetic ages are counted from, and the start of synthetic event time.
REFERENCE_DATE: Final = date(2026, 9, 1)
_CORSICA_SPLIT_YEAR: Final = 1976  # 2A/2B replaced département 20 on 1 January 1976


def seeded(*parts: object) -> random.Random:
    """A private generator seeded by a label: reproducible, independent of the global one.

    A string seed is hashed (SHA-512) by ``random``, so the stream does not depend on
    ``PYTHONHASHSEED`` or the platform, and different labels give unrelated streams.
    """
    label = "/".join(map(str, ("circulation/synthetic", *parts)))
    return random.Random(label)  # noqa: S311 - reproducible test data, not secrets


@dataclass(frozen=True, slots=True)
class Person:
    """A synthetic person: civil status and the NIR consistent with it."""

    nir: str
    sexe: Sexe
    nom_naissance: str
    nom_usage: str | None
    prenoms: str
    date_naissance: date
    lieu_naissance: str  # INSEE commune code, or 99 + country code

    def identity(self) -> dict[str, Any]:
        """The civil-status block that datasets embed (allocataires, enfants…)."""
        return {
            "nom_naissance": self.nom_naissance,
            "nom_usage": self.nom_usage,
            "prenoms": self.prenoms,
            "date_naissance": self.date_naissance.isoformat(),
            "sexe": self.sexe,
        }

    def age(self, on: date = REFERENCE_DATE) -> int:
        """Age in whole years on a given day."""
        before_birthday = (on.month, on.day) < (self.date_naissance.month, self.date_naissance.day)
        return on.year - self.date_naissance.year - before_birthday


def birth_date(rng: random.Random, min_age: int, max_age: int) -> date:
    """A birth date for someone aged ``min_age``..``max_age`` on :data:`REFERENCE_DATE`."""
    if not 0 <= min_age <= max_age:
        raise ValueError("ages must satisfy 0 <= min_age <= max_age")
    ref = REFERENCE_DATE
    earliest = date(ref.year - max_age - 1, ref.month, ref.day).toordinal() + 1
    latest = date(ref.year - min_age, ref.month, ref.day).toordinal()
    return date.fromordinal(rng.randint(earliest, latest))


def nir_for(rng: random.Random, sexe: Sexe, born: date, place: str) -> str:
    """A valid NIR for a person of this sex, birth date and birthplace (order number drawn)."""
    if place[:2] in ("2A", "2B") and born.year < _CORSICA_SPLIT_YEAR:
        place = "20" + place[2:]
    sex_digit = "2" if sexe == "F" else "1"
    order = rng.randint(1, 999)
    return complete_nir(f"{sex_digit}{born.year % 100:02d}{born.month:02d}{place}{order:03d}")


def draw_person(
    rng: random.Random, min_age: int = 18, max_age: int = 75, sexe: Sexe | None = None
) -> Person:
    """A new synthetic person aged ``min_age``..``max_age``."""
    chosen: Sexe = rng.choice(SEXES) if sexe is None else sexe
    born = birth_date(rng, min_age, max_age)
    place = birthplace(rng)
    nom = surname(rng)
    return Person(
        nir=nir_for(rng, chosen, born, place),
        sexe=chosen,
        nom_naissance=nom,
        nom_usage=_usage_name(rng, chosen, REFERENCE_DATE.year - born.year, nom),
        prenoms=given_names(rng, chosen),
        date_naissance=born,
        lieu_naissance=place,
    )


def _usage_name(rng: random.Random, sexe: Sexe, age: int, nom: str) -> str | None:
    """A married name for some adults (mostly women), else ``None`` as civil status has it."""
    chance = 0.4 if sexe == "F" else 0.02
    if age < 22 or rng.random() >= chance:
        return None
    spouse = surname(rng)
    return spouse if spouse != nom else f"{nom}-{surname(rng)}"


def person_from_nir(nir: str) -> Person:
    """The synthetic person behind a given NIR, always the same one for the same NIR.

    Sex, year and month of birth come from the NIR (a pseudo-month gives a drawn month); names
    and the day of birth are drawn from a generator seeded by the NIR, so several events about
    the same NIR describe the same person.
    """
    nir = validate_nir(nir)
    rng = seeded("person", nir)
    sexe: Sexe = "M" if int(nir[0]) % 2 else "F"
    yy, month = int(nir[1:3]), int(nir[3:5])
    if not 1 <= month <= 12:
        month = rng.randint(1, 12)
    year = 2000 + yy
    day = rng.randint(1, calendar.monthrange(year, month)[1])
    if date(year, month, day) > REFERENCE_DATE:
        year -= 100
    born = date(year, month, day)
    place = nir[5:10] if nir[5:7] != "20" else "2A" + nir[7:10]
    nom = surname(rng)
    return Person(
        nir=nir,
        sexe=sexe,
        nom_naissance=nom,
        nom_usage=_usage_name(rng, sexe, REFERENCE_DATE.year - year, nom),
        prenoms=given_names(rng, sexe),
        date_naissance=born,
        lieu_naissance=place,
    )


def people(seed: int, n: int, *, min_age: int = 18, max_age: int = 75) -> list[Person]:
    """A reproducible population of ``n`` distinct persons (distinct NIRs)."""
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = seeded("people", seed, min_age, max_age)
    population: dict[str, Person] = {}
    while len(population) < n:
        person = draw_person(rng, min_age, max_age)
        population.setdefault(person.nir, person)
    return list(population.values())


def draw_siren(rng: random.Random) -> str:
    """A valid SIREN shaped like a company's (first digit 3-9, as INSEE numbers companies)."""
    return complete_siren(f"{rng.randint(3, 9)}{rng.randrange(10_000_000):07d}")


def companies(seed: int, n: int) -> list[str]:
    """A reproducible list of ``n`` distinct valid SIRENs."""
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = seeded("companies", seed)
    sirens: dict[str, None] = {}
    while len(sirens) < n:
        sirens.setdefault(draw_siren(rng))
    return list(sirens)
