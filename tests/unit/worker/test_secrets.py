"""A routing worker holds the pseudonym secret and its checkpoint signing key, nothing else: it
never needs a NIR's subject reference (events arrive with one), so it never reads the subject
secret; without its own secret or key it refuses to start, in one line, before it touches the
broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.audit.checkpoints import new_key_pem
from streams.cli import app as cli
from streams.dev.localstack.tls import LocalCertificates
from streams.privacy.secret import SecretRefused
from streams.settings import Settings
from streams.worker.app import create_app
from tests.unit.command_settings import strong_secret

pytest_plugins = ("tests.unit.command_settings",)  # the fresh_settings fixture


def _signing_key_file(folder: Path) -> Path:
    """An owner-only checkpoint signing key, as an operator provides it on a secured bus."""
    folder.mkdir(mode=0o700)
    path = folder / "audit-signing-key.pem"
    path.write_text(new_key_pem(), encoding="ascii")
    path.chmod(0o600)
    return path


def test_a_worker_needs_only_the_pseudonym_secret(tmp_path: Path,
                                                  tmp_path_factory: pytest.TempPathFactory,
                                                  ) -> None:
    """On a production bus a missing subject secret is refused by whatever reads it: the worker
    is built, so it never does; nor does it make a development one."""
    create_app(Settings(cache_dir=tmp_path, security_protocol="SASL_PLAINTEXT",
                        pseudonym_secret=strong_secret(),
                        audit_signing_key_file=_signing_key_file(
                            tmp_path_factory.mktemp("operator") / "keys")))
    assert list(tmp_path.iterdir()) == []


def test_a_worker_on_a_secured_bus_without_its_signing_key_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(SecretRefused) as caught:
        create_app(Settings(cache_dir=tmp_path, security_protocol="SASL_PLAINTEXT",
                            pseudonym_secret=strong_secret()))
    assert caught.value.setting == "CIRCULATION_AUDIT_SIGNING_KEY_FILE"
    assert list(tmp_path.iterdir()) == [], "no development key on a secured bus"


def test_a_worker_given_only_the_subject_secret_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(SecretRefused) as caught:
        create_app(Settings(cache_dir=tmp_path, security_protocol="SASL_PLAINTEXT",
                            subject_secret=strong_secret()))
    assert caught.value.setting == "CIRCULATION_PSEUDONYM_SECRET"


@pytest.mark.usefixtures("fresh_settings")
def test_the_worker_command_refuses_in_one_line_before_touching_the_broker(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    weak = "a" * 32
    for name, value in {"CIRCULATION_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                        "CIRCULATION_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                        "CIRCULATION_CACHE_DIR": str(tmp_path),
                        "CIRCULATION_PSEUDONYM_SECRET": weak}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CIRCULATION_SUBJECT_SECRET", raising=False)
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: CIRCULATION_PSEUDONYM_SECRET: ")
    assert weak not in result.output + result.stderr


def test_a_worker_serves_no_web_page_and_keeps_no_table(tmp_path: Path) -> None:
    """Faust's web server would answer table contents to whoever reaches its port: it is off,
    and the worker declares no table (its state is followed from the state topics)."""
    app = create_app(Settings(cache_dir=tmp_path, pseudonym_secret=strong_secret()))
    assert app.conf.web_enabled is False
    assert list(app.tables) == []


def test_a_worker_on_sasl_ssl_authenticates_its_faust_clients(tmp_path: Path) -> None:
    """The worker's Kafka clients take the same SCRAM credential and CA as every command."""
    certificates = LocalCertificates(tmp_path / "tls")
    certificates.ensure()
    password = strong_secret()
    app = create_app(Settings(cache_dir=tmp_path, pseudonym_secret=strong_secret(),
                              audit_signing_key_file=_signing_key_file(tmp_path / "keys"),
                              security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                              sasl_username="bus-worker", sasl_password=password,
                              ssl_cafile=certificates.ca_file))
    credentials = app.conf.broker_credentials
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.username == "bus-worker"
    assert credentials.password == password.get_secret_value()
    assert credentials.ssl_context.verify_mode.name == "CERT_REQUIRED"
