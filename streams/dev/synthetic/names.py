"""Plausible French civil-status names for synthetic persons.

Frequent surnames and given names (accents and particles included, so every encoder and sink on
the bus is exercised with real-world text), drawn by a caller-supplied ``random.Random``.
"""

from __future__ import annotations

import random
from typing import Final, Literal

Sexe = Literal["F", "M"]
SEXES: Final[tuple[Sexe, ...]] = ("F", "M")

SURNAMES: Final = (
    "Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau",
    "Laurent", "Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David", "Bertrand", "Morel",
    "Fournier", "Girard", "Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent",
    "Muller", "Faure", "André", "Mercier", "Blanc", "Guérin", "Boyer", "Garnier", "Chevalier",
    "François", "Legrand", "Gauthier", "Garcia", "Perrin", "Robin", "Clément", "Morin",
    "Nicolas", "Henry", "Roussel", "Mathieu", "Masson", "Marchand", "Duval", "Denis", "Lemaire",
    "Noël", "Meyer", "Dufour", "Meunier", "Brun", "Blanchard", "Giraud", "Joly", "Rivière",
    "Lucas", "Brunet", "Gaillard", "Barbier", "Arnaud", "Martinez", "Gérard", "Roche", "Renard",
    "Schmitt", "Roy", "Leroux", "Colin", "Vidal", "Caron", "Picard", "Roger", "Fabre", "Aubert",
    "Lemoine", "Renaud", "Dumas", "Lacroix", "Olivier", "Philippe", "Bourgeois", "Pierre",
    "Benoît", "Rey", "Leclerc", "Payet", "Rolland", "Lopez", "Dupuy", "Hubert", "Berger",
    "Sanchez", "Le Gall", "Le Goff", "Da Silva", "Ferreira", "Nguyen", "Haddad", "Benali",
    "Hoarau", "Grondin", "Santoni", "Orsini", "Luciani", "N'Diaye", "De La Fontaine",
)  # fmt: skip

FEMALE_GIVEN_NAMES: Final = (
    "Marie", "Nathalie", "Isabelle", "Sylvie", "Catherine", "Françoise", "Christine", "Monique",
    "Valérie", "Sandrine", "Stéphanie", "Céline", "Julie", "Aurélie", "Camille", "Léa", "Manon",
    "Chloé", "Emma", "Inès", "Jade", "Louise", "Alice", "Lina", "Sarah", "Laura", "Élodie",
    "Émilie", "Anne", "Hélène", "Sophie", "Claire", "Martine", "Nicole", "Jeanne", "Amina",
    "Fatima", "Yasmine", "Océane", "Zoé", "Maëlys", "Anaïs",
)  # fmt: skip

MALE_GIVEN_NAMES: Final = (
    "Jean", "Pierre", "Michel", "Philippe", "Alain", "Nicolas", "Christophe", "Patrick",
    "Daniel", "Thierry", "Stéphane", "Frédéric", "Laurent", "David", "Julien", "Sébastien",
    "Thomas", "Maxime", "Lucas", "Hugo", "Louis", "Gabriel", "Léo", "Raphaël", "Arthur", "Jules",
    "Adam", "Mohamed", "Karim", "Mehdi", "Antoine", "Théo", "Nathan", "Enzo", "Paul", "Yanis",
    "Kévin", "Romain", "Quentin", "François", "Éric", "Noé",
)  # fmt: skip

# Hyphenated compounds are one given name ("Jean-Pierre"); several given names are separated by
# spaces in civil status ("Marie Claire").
FEMALE_COMPOUNDS: Final = ("Anne-Sophie", "Marie-Claire", "Marie-Laure", "Anne-Marie", "Lou-Ann")
MALE_COMPOUNDS: Final = ("Jean-Pierre", "Jean-Baptiste", "Pierre-Yves", "Jean-Luc", "Marc-Antoine")


def surname(rng: random.Random) -> str:
    """One surname, frequent ones and rarer ones alike."""
    return rng.choice(SURNAMES)


def given_names(rng: random.Random, sexe: Sexe) -> str:
    """One to three given names separated by spaces, the first sometimes a compound."""
    simple = FEMALE_GIVEN_NAMES if sexe == "F" else MALE_GIVEN_NAMES
    compounds = FEMALE_COMPOUNDS if sexe == "F" else MALE_COMPOUNDS
    first = rng.choice(compounds) if rng.random() < 0.12 else rng.choice(simple)
    count = rng.choices((1, 2, 3), weights=(45, 40, 15))[0]
    names = [first]
    while len(names) < count:
        candidate = rng.choice(simple)
        if candidate not in names:
            names.append(candidate)
    return " ".join(names)
