"""NIR detection in free text: every usual spelling found, nothing else taken for one."""

from __future__ import annotations

import json
import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.catalog import Catalog
from schemas.constraints import company_identifier_paths
from schemas.identifiers import complete_nir, complete_siret, nir_key
from schemas.nir_detection import MAX_DEPTH, TooDeep, contains_nir, nir_locations
from streams.dev.synthetic import DATASETS, generate

NIR = "184127645108946"  # "1 84 12 76 451 089 46", key 46
CORSICAN = complete_nir("285072A004012")
NBSP, NNBSP = "\u00a0", "\u202f"


@pytest.mark.parametrize("text", [
    NIR,
    "dossier-184127645108946",
    "1 84 12 76 451 089 46",
    "1.84.12.76.451.089.46",
    "1/84/12/76/451/089/46",
    "1_84_12_76_451_089_46",
    "1-84-12-76-451-089-46",
    f"1{NBSP}84{NBSP}12{NBSP}76{NBSP}451{NBSP}089{NBSP}46",
    f"1{NNBSP}84{NNBSP}12{NNBSP}76{NNBSP}451{NNBSP}089{NNBSP}46",
    "1841276451089 46",
    "NIR:184127645108946.",
    "né le 12/05/1984, numéro 184127645108946",
    "1841276451089",  # 13 characters, no key to check
    "Lycée 1 84 12 76 451 089",
    CORSICAN,
    CORSICAN.lower(),
    f"{CORSICAN[0]} {CORSICAN[1:3]} {CORSICAN[3:5]} {CORSICAN[5:7]} {CORSICAN[7:10]} "
    f"{CORSICAN[10:13]} {CORSICAN[13:]}",
])
def test_a_nir_is_found_in_every_usual_spelling(text: str) -> None:
    assert contains_nir(text)
    assert contains_nir(text.encode("utf-8"))


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-16"])
@pytest.mark.parametrize("prefix", [b"", b"\x01", b"\x02\x00\x05"])
def test_a_nir_in_utf16_bytes_is_found_whatever_the_alignment(encoding: str,
                                                               prefix: bytes) -> None:
    assert contains_nir(prefix + "ref 1 84 12 76 451 089 46 ok".encode(encoding))
    assert not contains_nir(prefix + "ref 3 84 12 76 451 089 46 ok".encode(encoding))


@pytest.mark.parametrize("text", [
    "",
    "Université Lumière Lyon 2",
    "3" + NIR[1:13],  # sex 3: not a final identifier
    "1841376451089",  # month 13
    "1840076451089",  # month 00
    "1841200451089",  # département 00
    "73282932000074",  # a SIRET: 14 digits
    "732 829 320 00074",
    "1" + NIR + "1",  # inside a longer run of digits
    "9" + NIR,
    NIR + "0",
    "01 84 12 76 45",  # phone numbers
    "+33 1 84 12 76 45, 06 12 34 56 78",
    "01 23 45 67 89 / 06 12 34 56 78",
    "FR76 3000 6000 0118 4127 6451 089",  # IBAN-like
    "FR76 3000 6000 0112 3456 7890 189",
    "2026-09-01T10:00:00.123Z",
    "12/05/1984 - 13/06/1985",
    "sr1_" + "ab" * 10 + NIR + "cd" * 20,  # a reference holding NIR digits in its hex run
    "ps1_" + NIR + "a" * 49,
    "ps2_" + "f" * 20 + NIR[:13] + "e" * 31,
    "9f86d081884c7d659a2feaa0c55ad015" + NIR + "ab0bf1",  # a digest
    "2a" * 40,
    "a1475123-4951-41c8-8cee-b9c059be578c",  # UUIDs: hex runs split by hyphens
    "d6ea6512-2e1a-4c79-8962-2363156b3e4e",
])
def test_what_is_not_a_nir_is_not_taken_for_one(text: str) -> None:
    assert not contains_nir(text)
    assert not contains_nir(text.encode("utf-8"))


def test_random_valid_sirets_are_never_taken_for_nirs() -> None:
    rng = random.Random(18)
    sirets = [complete_siret(f"{rng.randrange(10**13):013d}") for _ in range(100_000)]
    assert [s for s in sirets if contains_nir(s)] == []
    assert not contains_nir(" ".join(sirets[:1000]))


def test_random_uuids_are_never_taken_for_nirs() -> None:
    rng = random.Random(18)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(100_000)]
    assert [i for i in ids if contains_nir(i)] == []


def test_synthetic_events_hold_no_nir_outside_their_subject() -> None:
    catalog = Catalog.load()
    found: dict[str, list[str]] = {}
    for dataset_id in DATASETS:
        skip = {"subject"} | company_identifier_paths(catalog.dataset(dataset_id).latest.raw)
        for index, event in enumerate(generate(dataset_id, 2_000, seed=18)):
            published = json.loads(json.dumps(event))
            places = nir_locations(published, skip=skip)
            if places:
                found.setdefault(dataset_id, []).append(f"#{index} {places}")
    assert found == {}


def test_locations_name_every_string_holding_a_nir_by_its_path() -> None:
    event = {
        "id": "dossier-184127645108946",
        "subject": NIR,
        "data": {"ville_etudes": "Lyon", "tribunal": f"TJ {NIR}",
                 "enfants": [{"prenom": "Léa"}, {"prenom": "Max"}, {"prenom": NIR}],
                 "siret": "1 84 12 76 451 089 46"},
    }
    assert nir_locations(event, skip={"subject", "data.siret"}) == [
        "id", "data.tribunal", "data.enfants.2.prenom"]
    assert nir_locations(event["data"], path="data", skip={"data.siret"}) == [
        "data.tribunal", "data.enfants.2.prenom"]


def test_a_key_holding_a_nir_is_located_without_repeating_it() -> None:
    places = nir_locations({"data": {NIR: 1, "annee": 2026, "sub": {f"x {NIR}": "y"}}})
    assert places == ["data.<key>", "data.sub.<key>"]
    assert not any(NIR[:9] in place for place in places)


def test_bytes_and_numbers_in_a_value_are_scanned() -> None:
    assert nir_locations({"blob": b"x" + NIR.encode("utf-16-le")}) == ["blob"]
    value = {"a": int(NIR), "b": int("3" + NIR[1:]), "c": 10**4400, "d": 1.5, "e": None,
             "f": True, "g": 1_790_000_000_000}  # g: epoch milliseconds, 13 digits
    assert nir_locations(value) == ["a"]


def test_array_items_of_a_skipped_field_are_skipped_by_their_schema_path() -> None:
    value = {"data": {"etablissements": [{"siret": "1841276451089"}, {"siret": "x"}]}}
    assert nir_locations(value, skip={"data.etablissements.*.siret"}) == []
    assert nir_locations(value) == ["data.etablissements.0.siret"]


def test_nesting_beyond_the_bound_is_refused_naming_the_path() -> None:
    deep: object = "x"
    for _ in range(MAX_DEPTH + 1):
        deep = {"a": deep}
    with pytest.raises(TooDeep) as raised:
        nir_locations({"data": deep})
    assert raised.value.field.startswith("data.a.a")
    assert "nested" in str(raised.value)
    shallow: object = "x"
    for _ in range(MAX_DEPTH - 2):
        shallow = [shallow]
    assert nir_locations({"data": shallow}) == []


def test_company_identifier_paths_follow_the_schema_patterns() -> None:
    catalog = Catalog.load()
    assert company_identifier_paths(catalog.bus_record("contract").latest.raw) == {
        "data.subscriber_siret"}
    assert company_identifier_paths(catalog.bus_record("consent").latest.raw) == {
        "data.collected_by"}
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "siren", "type": "string", "pattern": "^[0-9]{9}$"},
        {"name": "sites", "type": {"type": "array", "items": {
            "type": "record", "name": "Site", "fields": [
                {"name": "siret", "type": ["null", "string"], "pattern": "^[0-9]{14}$"},
                {"name": "nom", "type": "string"}]}}},
        {"name": "code", "type": "string", "pattern": "^[0-9]{7}[A-Z]$"},
    ]}
    assert company_identifier_paths(schema) == {"data.siren", "data.sites.*.siret"}


def _spell(nir: str, separator: str, keyed: bool, lower: bool) -> str:
    """A NIR as people write it: INSEE's grouping, one separator, key or not."""
    groups = [nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13]]
    if keyed:
        groups.append(nir[13:])
    text = separator.join(groups)
    return text.lower() if lower else text


nir_numbers = st.builds(
    lambda sex, year, month, dept, place: f"{sex}{year:02d}{month:02d}{dept}{place:06d}",
    st.sampled_from("1278"),
    st.integers(0, 99),
    st.one_of(st.integers(1, 12), st.integers(20, 99)),
    st.one_of(st.integers(1, 99).map(lambda n: f"{n:02d}"), st.sampled_from(["2A", "2B"])),
    st.integers(0, 999_999),
)
surroundings = st.text(st.characters(categories=["L", "P", "Zs"], exclude_characters="-._/"),
                       max_size=30)


@settings(max_examples=400)
@given(number=nir_numbers,
       separator=st.sampled_from(["", " ", ".", "/", "_", "-", NBSP, NNBSP, "\u2009", " - "]),
       keyed=st.booleans(), lower=st.booleans(), before=surroundings, after=surroundings)
def test_any_valid_nir_in_any_spelling_inside_text_is_found(
        number: str, separator: str, keyed: bool, lower: bool, before: str, after: str) -> None:
    nir = f"{number}{nir_key(number):02d}"
    text = f"{before} {_spell(nir, separator, keyed, lower)} {after}"
    assert contains_nir(text)
    assert contains_nir(text.encode("utf-8"))
    assert contains_nir(text.encode("utf-16-le"))
    assert nir_locations({"data": {"champ": text}}) == ["data.champ"]


@pytest.mark.parametrize("text", ["Jean 1841276451089 12 ans", "1841276451089 06 12 34 56 78",
                                  "1 84 12 76 451 089 99", "184127645108999",
                                  "cafebabe184127645108946", "face184127645108946dead"],
                         ids=["number-then-age", "number-then-phone", "wrong-key-spaced",
                              "wrong-key", "glued-to-short-hex", "inside-short-hex"])
def test_a_nir_with_a_wrong_or_unrelated_key_still_counts(text: str) -> None:
    """The 13 characters name the person whatever follows them, and a short hexadecimal run
    around them is text, not a hash."""
    assert contains_nir(text)
