"""The population and consent commands hold the secret each step needs and no other: turning
typed NIRs into subject references takes the subject secret only; only the steps that show or
send a subscriber's pseudonyms (``population add``, the erasure notices of a withdrawal) take
the pseudonym secret."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from schemas.catalog import Catalog
from schemas.identifiers import InvalidIdentifier
from streams.cli import app as cli
from streams.privacy.pseudonyms import Pseudonymiser
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.subject_lists import GivenSubject
from streams.state.subjects import Subject, distinct, pseudonyms, resolve
from tests.unit.command_settings import strong_secret

pytest_plugins = ("tests.unit.command_settings",)  # the fresh_settings fixture

CATALOG = Catalog.load()
NIR = "184127645108946"
SIREN = "732829320"
LYON = Contract.checked({
    "id": "lyon-cantine-2026", "subscriber": "ville-de-lyon",
    "subscriber_siret": "21690123100011", "purpose": "Tarification sociale",
    "legal_basis": "CRPA art. L114-8", "datasets": {"quotient_familial": ["quotient_familial"]},
    "consent": "opt_in", "population": "enrolled", "retention": "P90D",
    "valid_from": "2026-01-01"}, CATALOG)


def test_resolving_typed_subjects_needs_only_the_subject_secret(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path, security_protocol="SASL_PLAINTEXT",
                        subject_secret=strong_secret())
    person, company = resolve(settings, [NIR, SIREN])
    assert person.reference.startswith("sr1_")
    assert company.reference == SIREN
    assert [f.name for f in dataclasses.fields(Subject)] == ["given", "reference"]
    assert list(tmp_path.iterdir()) == []


def test_a_subscriber_s_pseudonyms_need_only_the_pseudonym_secret(tmp_path: Path) -> None:
    edge = Settings(cache_dir=tmp_path, subject_secret=strong_secret())
    subjects = resolve(edge, [NIR, SIREN])
    secret = strong_secret()
    settings = Settings(cache_dir=tmp_path / "other", security_protocol="SASL_PLAINTEXT",
                        pseudonym_secret=secret)
    shown = pseudonyms(settings, LYON, subjects)
    expected = Pseudonymiser(secret).for_subscriber("ville-de-lyon")
    assert shown == [expected.pseudonym(subjects[0].reference), SIREN]
    assert shown[0].startswith("ps2_")
    assert not (tmp_path / "other").exists()


@pytest.mark.usefixtures("fresh_settings")
@pytest.mark.parametrize("command", [["population", "add"], ["population", "remove"],
                                     ["consent", "grant"], ["consent", "withdraw"]])
def test_a_subject_command_without_the_subject_secret_refuses_in_one_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: list[str]) -> None:
    for name, value in {"CIRCULATION_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                        "CIRCULATION_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                        "CIRCULATION_SCHEMA_REGISTRY_URL": "http://127.0.0.1:1",
                        "CIRCULATION_CACHE_DIR": str(tmp_path),
                        "CIRCULATION_PSEUDONYM_SECRET": strong_secret().get_secret_value()}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CIRCULATION_SUBJECT_SECRET", raising=False)
    result = CliRunner().invoke(cli, [*command, LYON.id, NIR])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: CIRCULATION_SUBJECT_SECRET: ")
    assert NIR not in result.output + result.stderr


@pytest.mark.usefixtures("fresh_settings")
def test_one_value_for_both_secrets_is_refused_in_one_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    same = strong_secret().get_secret_value()
    for name, value in {"CIRCULATION_CACHE_DIR": str(tmp_path),
                        "CIRCULATION_SUBJECT_SECRET": same,
                        "CIRCULATION_PSEUDONYM_SECRET": same}.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["population", "remove", LYON.id, NIR])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        "error: CIRCULATION_PSEUDONYM_SECRET must differ from CIRCULATION_SUBJECT_SECRET"]


def test_a_subject_from_a_file_is_named_by_its_line(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path, subject_secret=strong_secret())
    wrong_key = NIR[:13] + "47"
    with pytest.raises(InvalidIdentifier) as refused:
        resolve(settings, [NIR, GivenSubject(wrong_key, "line 17")])
    assert str(refused.value) == "line 17: invalid NIR (its control key does not match)"


def test_each_subject_is_kept_once_as_first_given(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path, subject_secret=strong_secret())
    spaced = "1 84 12 76 451 089 46"
    told: list[int] = []
    subjects = resolve(settings, [spaced, SIREN, GivenSubject(NIR, "line 1"),
                                  GivenSubject(SIREN, "line 2")], told.append)
    assert told == [1, 1, 1, 1]
    kept, repeats = distinct(subjects)
    assert [subject.given for subject in kept] == [spaced, SIREN]
    assert repeats == 2
