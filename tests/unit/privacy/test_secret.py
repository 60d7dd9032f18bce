"""The bus secret: the configured one wins; without one, a development secret is made once,
owner-only, and every process of the machine gets the same."""

from __future__ import annotations

import stat
from pathlib import Path

from pydantic import SecretStr

from streams.privacy.secret import bus_secret
from streams.settings import Settings


def test_a_configured_secret_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    configured = SecretStr("s" * 64)
    assert bus_secret(Settings(subject_secret=configured, cache_dir=tmp_path)) is configured
    assert list(tmp_path.iterdir()) == []


def test_a_development_secret_is_made_once_owner_only(tmp_path: Path) -> None:
    settings = Settings(subject_secret=None, cache_dir=tmp_path)
    first = bus_secret(settings).get_secret_value()
    again = bus_secret(Settings(subject_secret=None, cache_dir=tmp_path)).get_secret_value()
    assert first == again
    assert len(bytes.fromhex(first)) == 32
    kept = tmp_path / "secrets" / "subject-secret"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    assert [p.name for p in kept.parent.iterdir()] == ["subject-secret"]  # no draft left


def test_reading_settings_writes_nothing(tmp_path: Path) -> None:
    Settings(subject_secret=None, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
