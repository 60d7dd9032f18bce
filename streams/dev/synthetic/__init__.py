"""Realistic synthetic *published events* for demos, tests and benchmarks.

An event is the CloudEvents 1.0 JSON form a provider publishes::

    {"specversion": "1.0", "id": <uuid>, "source": <provider id>, "type": <dataset id>,
     "subject": <NIR or SIREN>, "time": <RFC 3339, UTC>, "data": {...}}

Output is a pure function of the arguments: everything (ids, subjects, payloads, event times from
2026-09-01T00:00:00Z onwards) is drawn from one ``random.Random`` seeded by them, never from the
global generator or the clock, so a failing test or a benchmark can be replayed exactly, and the
first ``k`` events of a run do not depend on ``count``.

``subjects`` (for instance :func:`people` or :func:`companies`) makes several events concern the
same persons or companies, the way a demo shows one family's quotient familial and its student's
bursary reaching the same commune.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from schemas.identifiers import validate_nir, validate_siren
from streams.dev.synthetic.datasets import (
    COMPANY_DATASETS,
    COMPANY_SPECS,
    DATASETS,
    PERSON_DATASETS,
    PERSON_SPECS,
)
from streams.dev.synthetic.population import (
    REFERENCE_DATE,
    Person,
    companies,
    draw_person,
    draw_siren,
    people,
    person_from_nir,
    seeded,
)

__all__ = [
    "BASE_TIME",
    "COMPANY_DATASETS",
    "DATASETS",
    "PERSON_DATASETS",
    "REFERENCE_DATE",
    "Person",
    "companies",
    "generate",
    "people",
    "person_from_nir",
]

#: Time of the first synthetic event's clock (events follow at random intervals).
BASE_TIME: Final = datetime(2026, 9, 1, tzinfo=UTC)
_MEAN_GAP_MS: Final = 2_000.0

Event = dict[str, Any]
_Draw = Callable[[random.Random, date], tuple[str, dict[str, Any]]]


def generate(
    dataset_id: str,
    count: int,
    seed: int,
    provider: str | None = None,
    subjects: Sequence[Person | str] | None = None,
) -> Iterator[Event]:
    """``count`` published events of ``dataset_id``, lazily, reproducibly from ``seed``.

    ``provider`` fixes the source (it must publish the dataset), else sources are drawn in their
    usual proportions (CNAF ~90% / MSA ~10% for the quotient familial). ``subjects`` draws the
    subjects from a given population: :class:`Person` objects or NIRs for person datasets
    (a bare NIR always gets the same synthetic civil status), SIRENs for company datasets.
    Arguments are checked here, before the first event is drawn.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if dataset_id not in DATASETS:
        raise ValueError(f"unknown dataset {dataset_id!r}; known: {', '.join(sorted(DATASETS))}")
    if provider is not None and provider not in DATASETS[dataset_id]:
        raise ValueError(
            f"{provider!r} does not publish {dataset_id!r}; "
            f"its providers: {', '.join(DATASETS[dataset_id])}"
        )
    draw = (
        _person_draw(dataset_id, subjects)
        if dataset_id in PERSON_SPECS
        else _company_draw(dataset_id, subjects)
    )
    rng = seeded("events", dataset_id, provider, seed)
    return _events(rng, dataset_id, count, provider, draw)


def _events(
    rng: random.Random, dataset_id: str, count: int, provider: str | None, draw: _Draw
) -> Iterator[Event]:
    """The event stream itself: envelope, then subject and payload, all from ``rng``."""
    spec = PERSON_SPECS.get(dataset_id) or COMPANY_SPECS[dataset_id]
    moment = BASE_TIME
    for _ in range(count):
        moment += timedelta(milliseconds=round(rng.expovariate(1 / _MEAN_GAP_MS)))
        event_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        source = provider or rng.choices(spec.providers, weights=spec.provider_weights)[0]
        subject, data = draw(rng, moment.date())
        yield {
            "specversion": "1.0",
            "id": str(event_id),
            "source": source,
            "type": dataset_id,
            "subject": subject,
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "data": data,
        }


def _person_draw(dataset_id: str, subjects: Sequence[Person | str] | None) -> _Draw:
    """Subject and payload of a person dataset: a drawn person of the right age, or one given."""
    spec = PERSON_SPECS[dataset_id]
    pool = None if subjects is None else _person_pool(subjects)

    def draw(rng: random.Random, day: date) -> tuple[str, dict[str, Any]]:
        person = rng.choice(pool) if pool else draw_person(rng, *spec.ages)
        return person.nir, spec.build(rng, person, day)

    return draw


def _company_draw(dataset_id: str, subjects: Sequence[Person | str] | None) -> _Draw:
    """Subject and payload of a company dataset: a drawn SIREN, or one of those given."""
    spec = COMPANY_SPECS[dataset_id]
    pool = None if subjects is None else _company_pool(subjects)

    def draw(rng: random.Random, day: date) -> tuple[str, dict[str, Any]]:
        siren = rng.choice(pool) if pool else draw_siren(rng)
        return siren, spec.build(rng, day)

    return draw


def _checked_sequence(subjects: Sequence[Person | str]) -> Sequence[Person | str]:
    """Refuse a bare string (it would be read character by character) and an empty pool."""
    if isinstance(subjects, str):
        raise TypeError("subjects is a sequence of subjects, not one string")
    if not subjects:
        raise ValueError("subjects, when given, must not be empty")
    return subjects


def _person_pool(subjects: Sequence[Person | str]) -> list[Person]:
    """Persons from Person objects or NIRs, every NIR validated."""
    pool = []
    for index, subject in enumerate(_checked_sequence(subjects)):
        if isinstance(subject, Person):
            validate_nir(subject.nir, f"subjects[{index}]")
            pool.append(subject)
        else:
            pool.append(person_from_nir(validate_nir(subject, f"subjects[{index}]")))
    return pool


def _company_pool(subjects: Sequence[Person | str]) -> list[str]:
    """SIRENs, validated; a person cannot be the subject of a company dataset."""
    pool = []
    for index, subject in enumerate(_checked_sequence(subjects)):
        if isinstance(subject, Person):
            raise TypeError(f"subjects[{index}]: company datasets take SIRENs, not persons")
        pool.append(validate_siren(subject, f"subjects[{index}]"))
    return pool
