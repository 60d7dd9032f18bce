"""Places and establishments for synthetic events: birthplaces, universities, schools, courts.

Codes are real INSEE codes (communes, countries) so a NIR built from them looks like a real one;
UAI numbers are well formed (their check letter is right) but the pairing of a UAI with an
establishment's name is synthetic and must not be read as a directory.
"""

from __future__ import annotations

import random
from typing import Final, NamedTuple

# INSEE commune codes of birth: Paris, Marseille and Lyon register births by arrondissement.
METROPOLITAN_BIRTHPLACES: Final = (
    *(f"751{n:02d}" for n in range(1, 21)),
    *(f"132{n:02d}" for n in range(1, 17)),
    *(f"6938{n}" for n in range(1, 10)),
    "31555", "06088", "44109", "67482", "34172", "33063", "59350", "35238", "51454", "76351",
    "76540", "42218", "83137", "38185", "21231", "49007", "30189", "63113", "72181", "29019",
    "37261", "80021", "87085", "57463", "54395", "25056", "66136", "45234", "14118", "68224",
    "86194", "64445", "93066", "93048", "92012", "94028", "95127", "78646", "60057", "01053",
    "05061", "09122", "62041", "59512", "91228",
)  # fmt: skip
CORSICAN_BIRTHPLACES: Final = ("2A004", "2A247", "2B033", "2B096", "2B050")
OVERSEAS_BIRTHPLACES: Final = (
    "97101",
    "97120",
    "97209",
    "97302",
    "97411",
    "97415",
    "97416",
    "97611",
)
# Born abroad: département 99 then the INSEE country code (Maroc, Algérie, Tunisie, Portugal,
# Espagne, Italie, Allemagne, Belgique, Sénégal).
FOREIGN_BIRTHPLACES: Final = (
    "99350", "99352", "99351", "99139", "99134", "99127", "99109", "99131", "99341",
)  # fmt: skip


def birthplace(rng: random.Random) -> str:
    """A 5-character birthplace code, weighted roughly like births registered in France."""
    group = rng.choices(
        (METROPOLITAN_BIRTHPLACES, CORSICAN_BIRTHPLACES, OVERSEAS_BIRTHPLACES, FOREIGN_BIRTHPLACES),
        weights=(84, 4, 4, 8),
    )[0]
    return rng.choice(group)


_UAI_LETTERS: Final = "ABCDEFGHJKLMNPRSTUVWXYZ"  # 23 letters: no I, O or Q


def uai(seven_digits: str) -> str:
    """A UAI (the school/university register number): 7 digits and their check letter."""
    if len(seven_digits) != 7 or not seven_digits.isascii() or not seven_digits.isdigit():
        raise ValueError("a UAI starts with 7 digits")
    return seven_digits + _UAI_LETTERS[int(seven_digits) % 23]


class University(NamedTuple):
    """A higher-education establishment as MESR and CNOUS events name it."""

    uai: str
    nom: str
    code_commune: str
    ville: str


UNIVERSITIES: Final = tuple(
    University(uai(digits), nom, code_commune, ville)
    for digits, nom, code_commune, ville in (
        ("0755976", "Université Paris Cité", "75056", "Paris"),
        ("0755890", "Sorbonne Université", "75056", "Paris"),
        ("0751717", "Université Paris 1 Panthéon-Sorbonne", "75056", "Paris"),
        ("0912408", "Université Paris-Saclay", "91471", "Orsay"),
        ("0691774", "Université Claude Bernard Lyon 1", "69266", "Villeurbanne"),
        ("0691775", "Université Lumière Lyon 2", "69123", "Lyon"),
        ("0134009", "Aix-Marseille Université", "13055", "Marseille"),
        ("0333298", "Université de Bordeaux", "33063", "Bordeaux"),
        ("0673021", "Université de Strasbourg", "67482", "Strasbourg"),
        ("0597239", "Université de Lille", "59350", "Lille"),
        ("0311382", "Université Toulouse Capitole", "31555", "Toulouse"),
        ("0342321", "Université de Montpellier", "34172", "Montpellier"),
        ("0441986", "Nantes Université", "44109", "Nantes"),
        ("0350937", "Université Rennes 2", "35238", "Rennes"),
        ("0383546", "Université Grenoble Alpes", "38185", "Grenoble"),
        ("0062205", "Université Côte d'Azur", "06088", "Nice"),
        ("0542493", "Université de Lorraine", "54395", "Nancy"),
        ("0631262", "Université Clermont Auvergne", "63113", "Clermont-Ferrand"),
        ("0141408", "Université de Caen Normandie", "14118", "Caen"),
        ("0370800", "Université de Tours", "37261", "Tours"),
        ("0860856", "Université de Poitiers", "86194", "Poitiers"),
        ("0801344", "Université de Picardie Jules Verne", "80021", "Amiens"),
        ("7200664", "Université de Corse Pasquale Paoli", "2B096", "Corte"),
        ("9740478", "Université de La Réunion", "97411", "Saint-Denis"),
    )
)

# The first three digits of a UAI are the académie's département (620/720 for Corse-du-Sud and
# Haute-Corse, 97x overseas).
SCHOOL_DEPARTMENTS: Final = (
    "075", "092", "093", "094", "013", "069", "059", "033", "031", "044", "067", "034", "035",
    "038", "006", "076", "062", "620", "720", "971", "974",
)  # fmt: skip


def school_uai(rng: random.Random) -> str:
    """The UAI of a collège or lycée somewhere in France."""
    return uai(rng.choice(SCHOOL_DEPARTMENTS) + f"{rng.randrange(10_000):04d}")


COURTS: Final = (
    "Tribunal de commerce de Lyon",
    "Tribunal de commerce de Bordeaux",
    "Tribunal de commerce de Nantes",
    "Tribunal de commerce de Lille Métropole",
    "Tribunal de commerce de Toulouse",
    "Tribunal de commerce de Rennes",
    "Tribunal de commerce de Montpellier",
    "Tribunal de commerce de Grenoble",
    "Tribunal de commerce de Bobigny",
    "Tribunal de commerce de Créteil",
    "Tribunal de commerce d'Ajaccio",
    "Tribunal de commerce de Bastia",
    "Tribunal des activités économiques de Paris",
    "Tribunal judiciaire de Strasbourg",
    "Tribunal judiciaire de Metz",
    "Tribunal judiciaire de Mulhouse",
    "Tribunal judiciaire de Lyon",
    "Tribunal mixte de commerce de Saint-Denis",
)
