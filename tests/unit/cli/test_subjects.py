"""``circulation consent``: a NIR typed into a consent's texts is refused before anything else."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from schemas.nir_detection import contains_nir
from streams.cli import app

NIR = "184127645108946"


@pytest.mark.parametrize(("option", "value"), [
    ("--evidence", f"formulaire {NIR}"),
    ("--collected-by", "1 84 12 76 451 089 46"),
])
def test_a_nir_in_a_consent_option_is_refused_naming_the_option(
        monkeypatch: pytest.MonkeyPatch, option: str, value: str) -> None:
    monkeypatch.setenv("CIRCULATION_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("CIRCULATION_SCHEMA_REGISTRY_URL", "http://127.0.0.1:1")
    result = CliRunner().invoke(app, ["consent", "grant", "lyon-cantine", NIR, option, value])
    assert result.exit_code != 0
    assert option in result.output
    assert "NIR" in result.output
    assert not contains_nir(result.output)
