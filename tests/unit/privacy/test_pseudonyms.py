"""Subject references and pairwise pseudonyms: stable, keyed, unlinkable across subscribers."""

from __future__ import annotations

import hashlib
import hmac
import pickle
import re
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from schemas.identifiers import InvalidIdentifier, complete_nir, complete_siren
from streams.privacy.pseudonyms import (
    MIN_SECRET_BYTES,
    Pseudonymiser,
    SubjectReferences,
    subject_kind,
)

SECRET = "7c4f0f1e2a9b4d6e8f01a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7"
OTHER_SECRET = "0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e"
PSEUDONYM_SECRET = "Jx3q9Vt0pLm2Rw8sKd5fHa7Zc1Ny4Ub6Eo0Gi3Qk9Tv"
NIR = "184127645108946"
SIREN = "732829320"

nirs = st.builds(
    lambda sex, year, month, dept, rest: complete_nir(
        f"{sex}{year:02d}{month:02d}{dept}{rest:06d}"
    ),
    st.sampled_from("12"),
    st.integers(0, 99),
    st.integers(1, 12),
    st.sampled_from(["75", "69", "2A", "2B", "99", "13"]),
    st.integers(1, 999_999),
)
subscriber_ids = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=40
)


@pytest.fixture(scope="module")
def references() -> SubjectReferences:
    return SubjectReferences(SecretStr(SECRET))


@pytest.fixture(scope="module")
def pseudonymiser() -> Pseudonymiser:
    return Pseudonymiser(SecretStr(PSEUDONYM_SECRET))


# --- subject references ------------------------------------------------------------------------


def test_subject_reference_is_the_documented_hmac(references: SubjectReferences) -> None:
    """Pins the scheme: changing it would orphan every reference already keyed on the bus."""
    expected = hmac.new(
        SECRET.encode(), b"circulation/subject/v1/" + NIR.encode(), hashlib.sha256
    ).hexdigest()
    assert references.for_person(NIR) == "sr1_" + expected


def test_subject_reference_shape_and_normalisation(references: SubjectReferences) -> None:
    reference = references.for_person(NIR)
    assert re.fullmatch(r"sr1_[0-9a-f]{64}", reference)
    assert subject_kind(reference) == "person"
    assert references.for_person("1 84 12 76 451 089 46") == reference
    assert NIR not in reference


@given(nirs)
def test_subject_reference_is_stable_and_secret_dependent(nir: str) -> None:
    first = SubjectReferences(SecretStr(SECRET)).for_person(nir)
    again = SubjectReferences(SecretStr(SECRET)).for_person(nir)
    other_bus = SubjectReferences(SecretStr(OTHER_SECRET)).for_person(nir)
    assert first == again
    assert first != other_bus


@given(nirs, nirs)
def test_distinct_persons_get_distinct_references(first: str, second: str) -> None:
    references = SubjectReferences(SecretStr(SECRET))
    assert (references.for_person(first) == references.for_person(second)) == (first == second)


def test_invalid_nir_is_refused_without_quoting(references: SubjectReferences) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        references.for_person("184127645108912", field="beneficiaire")
    assert caught.value.field == "beneficiaire"
    assert "184127645108912" not in str(caught.value)


def test_company_subject_passes_through_validated(references: SubjectReferences) -> None:
    assert references.for_company(" 732 829 320 ") == SIREN
    assert references.reference(SIREN, "company") == SIREN
    assert references.reference(NIR, "person") == references.for_person(NIR)
    with pytest.raises(InvalidIdentifier, match="Luhn"):
        references.for_company("732829321")
    with pytest.raises(InvalidIdentifier):
        references.reference(SIREN, "person")  # a SIREN is not a NIR
    with pytest.raises(ValueError, match="unknown subject kind"):
        references.reference(SIREN, "association")  # type: ignore[arg-type]


# --- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [SubjectReferences, Pseudonymiser])
def test_secret_never_shows_and_cannot_be_pickled(make: type) -> None:
    holder = make(SecretStr(SECRET))
    assert SECRET not in repr(holder)
    assert SECRET not in str(holder)
    with pytest.raises(TypeError):
        pickle.dumps(holder)


@pytest.mark.parametrize("make", [SubjectReferences, Pseudonymiser])
def test_short_or_plain_secrets_are_refused(make: type) -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_SECRET_BYTES} bytes"):
        make(SecretStr("x" * (MIN_SECRET_BYTES - 1)))
    with pytest.raises(TypeError, match="SecretStr"):
        make(SECRET)
    make(SecretStr(secrets.token_hex(MIN_SECRET_BYTES // 2)))  # exactly the minimum length


# --- pairwise pseudonyms -----------------------------------------------------------------------


def test_pseudonym_is_the_documented_construction(
    references: SubjectReferences, pseudonymiser: Pseudonymiser
) -> None:
    reference = references.for_person(NIR)
    key = hmac.new(PSEUDONYM_SECRET.encode(), b"circulation/pseudonym/v2/ville-lyon",
                   hashlib.sha256).digest()
    expected = hmac.new(key, reference.encode(), hashlib.sha256).hexdigest()
    assert pseudonymiser.for_subscriber("ville-lyon").pseudonym(reference) == "ps2_" + expected


@given(nirs, subscriber_ids)
def test_the_subject_secret_alone_does_not_give_the_pseudonym(nir: str, subscriber: str) -> None:
    """Whoever holds only the edge's secret (a provider) cannot compute what a subscriber sees,
    under the old construction or the new one."""
    reference = SubjectReferences(SecretStr(SECRET)).for_person(nir)
    delivered = Pseudonymiser(SecretStr(PSEUDONYM_SECRET)).pseudonym(subscriber, reference)
    from_the_edge = Pseudonymiser(SecretStr(SECRET)).pseudonym(subscriber, reference)
    old_key = hmac.new(SECRET.encode(), b"circulation/pseudonym/v1/" + subscriber.encode(),
                       hashlib.sha256).digest()
    old = hmac.new(old_key, reference.encode(), hashlib.sha256).hexdigest()
    assert delivered.startswith("ps2_")
    assert delivered not in (from_the_edge, "ps1_" + old, "ps2_" + old)


@given(nirs, subscriber_ids, subscriber_ids)
def test_subscribers_get_different_pseudonyms_for_the_same_person(
    nir: str, first: str, second: str
) -> None:
    reference = SubjectReferences(SecretStr(SECRET)).for_person(nir)
    pseudonymiser = Pseudonymiser(SecretStr(PSEUDONYM_SECRET))
    one = pseudonymiser.for_subscriber(first).pseudonym(reference)
    two = pseudonymiser.for_subscriber(second).pseudonym(reference)
    assert (one == two) == (first == second)
    assert re.fullmatch(r"ps2_[0-9a-f]{64}", one)
    assert one != reference


@given(nirs, subscriber_ids)
def test_pseudonym_is_stable_per_subscriber(nir: str, subscriber: str) -> None:
    reference = SubjectReferences(SecretStr(SECRET)).for_person(nir)
    first = Pseudonymiser(SecretStr(PSEUDONYM_SECRET)).pseudonym(subscriber, reference)
    again = Pseudonymiser(SecretStr(PSEUDONYM_SECRET)).for_subscriber(subscriber)
    assert again.pseudonym(reference) == first
    assert again.pseudonym(reference) == first  # the prepared key is not consumed by use
    assert Pseudonymiser(SecretStr(OTHER_SECRET)).pseudonym(subscriber, reference) != first


@given(st.integers(0, 10**8 - 1), subscriber_ids)
def test_company_subjects_pass_through_for_every_subscriber(first8: int, subscriber: str) -> None:
    siren = complete_siren(f"{first8:08d}")
    assert Pseudonymiser(SecretStr(SECRET)).pseudonym(subscriber, siren) == siren
    assert subject_kind(siren) == "company"


def test_subject_kind_tells_persons_from_companies(references: SubjectReferences) -> None:
    assert subject_kind(references.for_person(NIR)) == "person"
    assert subject_kind(SIREN) == "company"


@pytest.mark.parametrize(
    "subject",
    [NIR, "1 84 12 76 451 089 46", "sr1_" + "A" * 64, "sr1_" + "0" * 63, "ps1_" + "0" * 64,
     "ps2_" + "0" * 64, "", 42],
)
def test_raw_nirs_and_malformed_subjects_are_refused(
    pseudonymiser: Pseudonymiser, subject: object
) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        pseudonymiser.for_subscriber("ville-lyon").pseudonym(subject)  # type: ignore[arg-type]
    assert NIR not in str(caught.value)
    assert caught.value.field == "subject"


def test_subscriber_keys_are_prepared_once(pseudonymiser: Pseudonymiser) -> None:
    prepared = pseudonymiser.for_subscriber("departement-69")
    assert pseudonymiser.for_subscriber("departement-69") is prepared
    assert repr(prepared) == "SubscriberPseudonyms(subscriber_id='departement-69')"


@pytest.mark.parametrize("subscriber", ["", "   ", " ville-lyon", "ville-lyon\n"])
def test_ambiguous_subscriber_ids_are_refused(
    pseudonymiser: Pseudonymiser, subscriber: str
) -> None:
    with pytest.raises(ValueError, match="subscriber id"):
        pseudonymiser.for_subscriber(subscriber)
