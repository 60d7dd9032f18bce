"""``audit public-key`` prints the public half only, and says which setting is missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.audit.checkpoints import read_public_key
from streams.cli import app
from streams.settings import get_settings


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)  # no .env file
    monkeypatch.setenv("CIRCULATION_CACHE_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_the_public_key_is_printed_and_never_the_private_one(cache: Path) -> None:
    result = CliRunner().invoke(app, ["audit", "public-key"])
    assert result.exit_code == 0, result.stderr
    read_public_key(result.stdout.encode())
    private = (cache / "secrets" / "audit-signing-key.pem").read_text(encoding="ascii")
    assert "PRIVATE" not in result.stdout
    assert private.splitlines()[1] not in result.stdout


def test_a_secured_bus_without_a_key_names_the_setting(cache: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRCULATION_SECURITY_PROTOCOL", "SASL_SSL")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["audit", "public-key"])
    assert result.exit_code == 1
    assert "CIRCULATION_AUDIT_SIGNING_KEY_FILE: unset" in result.stderr
    assert not (cache / "secrets").exists()
