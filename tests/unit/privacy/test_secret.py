"""The bus's two secrets: each configured one is checked, each development one made once,
owner-only, and a production bus (any security protocol but PLAINTEXT) starts only with both
configured. Every refusal is one line naming the setting, never the value."""

from __future__ import annotations

import base64
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from streams.privacy.secret import SecretRefused, pseudonym_secret, subject_secret
from streams.settings import Settings

Load = Callable[[Settings], SecretStr]
BOTH: list[tuple[Load, str]] = [(subject_secret, "subject"), (pseudonym_secret, "pseudonym")]
STRONG = {
    "token_hex(32)": lambda: secrets.token_hex(32),
    "token_urlsafe(32)": lambda: secrets.token_urlsafe(32),
    "base64 of 32 random bytes": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
}
WEAK = {
    "one character repeated": "a" * 32,
    "a longer run of one character": "s" * 64,
    "two characters alternating": "ab" * 32,
    "digits in sequence": "0123456789" * 4,
    "an alphabet in order": "abcdefghijklmnopqrstuvwxyz0123456789",
    "a keyboard row": "qwertyuiopasdfghjklzxcvbnm1234567890",
    "a repeated word": "password" * 5,
    "a passphrase of common words": "correct horse battery staple, 32+ bytes of it",
    "a sentence": "another bus, another secret, also long enough",
    "strong but short": secrets.token_urlsafe(16),
}


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", **values)  # type: ignore[arg-type]


def _secret_file(tmp_path: Path, name: str, content: str, mode: int) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    path.chmod(mode)
    return path


def _refusal(load: Load, settings: Settings) -> SecretRefused:
    with pytest.raises(SecretRefused) as caught:
        load(settings)
    return caught.value


# --- configured secrets ----------------------------------------------------------------------


@pytest.mark.parametrize(("load", "kind"), BOTH)
def test_a_configured_secret_is_used_and_nothing_is_written(
        tmp_path: Path, load: Load, kind: str) -> None:
    configured = SecretStr(secrets.token_urlsafe(32))
    assert load(_settings(tmp_path, **{f"{kind}_secret": configured})) is configured
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(("load", "kind"), BOTH)
@pytest.mark.parametrize("make", STRONG.values(), ids=list(STRONG))
def test_random_secrets_of_32_bytes_are_accepted(
        tmp_path: Path, load: Load, kind: str, make: Callable[[], str]) -> None:
    for _ in range(10):
        value = make()
        assert load(_settings(tmp_path, **{f"{kind}_secret": SecretStr(value)})
                    ).get_secret_value() == value


@pytest.mark.parametrize(("load", "kind"), BOTH)
@pytest.mark.parametrize("weak", WEAK.values(), ids=list(WEAK))
def test_a_guessable_secret_is_refused_in_one_line_naming_the_setting(
        tmp_path: Path, load: Load, kind: str, weak: str) -> None:
    refusal = _refusal(load, _settings(tmp_path, **{f"{kind}_secret": SecretStr(weak)}))
    setting = f"CIRCULATION_{kind.upper()}_SECRET"
    assert refusal.setting == setting
    assert str(refusal).startswith(f"{setting}: ")
    assert "\n" not in str(refusal)
    assert weak not in str(refusal)
    assert weak[:8] not in str(refusal)


def test_the_two_secrets_must_differ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    same = secrets.token_urlsafe(32)
    monkeypatch.setenv("CIRCULATION_SUBJECT_SECRET", same)
    monkeypatch.setenv("CIRCULATION_PSEUDONYM_SECRET", same)
    with pytest.raises(ValidationError) as caught:
        _settings(tmp_path)
    assert "CIRCULATION_PSEUDONYM_SECRET must differ" in str(caught.value)
    assert same[:5] not in str(caught.value)


# --- secret files ----------------------------------------------------------------------------


@pytest.mark.parametrize(("load", "kind"), BOTH)
def test_a_secret_file_readable_by_its_owner_only_is_read(
        tmp_path: Path, load: Load, kind: str) -> None:
    value = secrets.token_hex(32)
    path = _secret_file(tmp_path, kind, value + "\n", 0o600)
    assert load(_settings(tmp_path, **{f"{kind}_secret_file": path})
                ).get_secret_value() == value
    path.chmod(0o400)
    assert load(_settings(tmp_path, **{f"{kind}_secret_file": path})
                ).get_secret_value() == value


@pytest.mark.parametrize(("load", "kind"), BOTH)
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o660, 0o644, 0o666])
def test_a_secret_file_others_can_read_or_write_is_refused(
        tmp_path: Path, load: Load, kind: str, mode: int) -> None:
    value = secrets.token_hex(32)
    path = _secret_file(tmp_path, kind, value, mode)
    refusal = _refusal(load, _settings(tmp_path, **{f"{kind}_secret_file": path}))
    setting = f"CIRCULATION_{kind.upper()}_SECRET_FILE"
    assert refusal.setting == setting
    assert str(refusal).startswith(f"{setting}: ")
    assert "chmod 600" in str(refusal)
    assert "\n" not in str(refusal)
    assert value not in str(refusal)


@pytest.mark.parametrize(("load", "kind"), BOTH)
def test_a_guessable_or_missing_secret_file_is_refused(
        tmp_path: Path, load: Load, kind: str) -> None:
    setting = f"CIRCULATION_{kind.upper()}_SECRET_FILE"
    weak = _secret_file(tmp_path, kind, "a" * 32, 0o600)
    assert _refusal(load, _settings(tmp_path, **{f"{kind}_secret_file": weak})
                    ).setting == setting
    missing = _refusal(load, _settings(tmp_path, **{f"{kind}_secret_file": tmp_path / "none"}))
    assert missing.setting == setting
    assert "\n" not in str(missing)


@pytest.mark.parametrize(("load", "kind"), BOTH)
def test_a_secret_given_both_inline_and_as_a_file_is_refused(
        tmp_path: Path, load: Load, kind: str) -> None:
    value = secrets.token_hex(32)
    path = _secret_file(tmp_path, kind, value, 0o600)
    refusal = _refusal(load, _settings(tmp_path, **{f"{kind}_secret": SecretStr(value),
                                                    f"{kind}_secret_file": path}))
    assert refusal.setting == f"CIRCULATION_{kind.upper()}_SECRET"
    assert "_SECRET_FILE" in str(refusal)


# --- development secrets ---------------------------------------------------------------------


def test_development_secrets_are_made_once_each_owner_only_and_differ(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    subject = subject_secret(settings).get_secret_value()
    pseudonym = pseudonym_secret(settings).get_secret_value()
    assert subject_secret(_settings(tmp_path)).get_secret_value() == subject
    assert pseudonym_secret(_settings(tmp_path)).get_secret_value() == pseudonym
    assert subject != pseudonym
    assert len(bytes.fromhex(subject)) == len(bytes.fromhex(pseudonym)) == 32
    kept = tmp_path / "cache" / "secrets"
    assert sorted(p.name for p in kept.iterdir()) == ["pseudonym-secret", "subject-secret"]
    assert stat.S_IMODE(kept.stat().st_mode) == 0o700
    for path in kept.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(("load", "kind"), BOTH)
def test_each_development_secret_is_made_only_by_what_needs_it(
        tmp_path: Path, load: Load, kind: str) -> None:
    load(_settings(tmp_path))
    assert [p.name for p in (tmp_path / "cache" / "secrets").iterdir()] == [f"{kind}-secret"]


@pytest.mark.parametrize(("load", "kind"), BOTH)
def test_a_development_secret_others_can_read_is_refused(
        tmp_path: Path, load: Load, kind: str) -> None:
    load(_settings(tmp_path))
    (tmp_path / "cache" / "secrets" / f"{kind}-secret").chmod(0o644)
    refusal = _refusal(load, _settings(tmp_path))
    assert refusal.setting == f"CIRCULATION_{kind.upper()}_SECRET"
    assert "chmod 600" in str(refusal)
    assert "\n" not in str(refusal)


@pytest.mark.parametrize(("load", "kind"), BOTH)
@pytest.mark.parametrize("protocol", ["SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_a_production_bus_refuses_to_start_without_its_secrets(
        tmp_path: Path, load: Load, kind: str, protocol: str) -> None:
    refusal = _refusal(load, _settings(tmp_path, security_protocol=protocol))
    assert refusal.setting == f"CIRCULATION_{kind.upper()}_SECRET"
    assert "CIRCULATION_SECURITY_PROTOCOL" in str(refusal)
    assert "\n" not in str(refusal)
    assert not (tmp_path / "cache").exists(), "no development secret on a production bus"


def test_reading_settings_reads_and_writes_nothing(tmp_path: Path) -> None:
    unreadable = _secret_file(tmp_path, "subject", secrets.token_hex(32), 0o644)
    Settings(cache_dir=tmp_path / "cache", subject_secret_file=unreadable,
             pseudonym_secret_file=tmp_path / "none")
    assert not (tmp_path / "cache").exists()
    assert os.access(unreadable, os.R_OK)
