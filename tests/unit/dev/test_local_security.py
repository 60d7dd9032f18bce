"""The secure local stack's material: its certificates, and the environment `local env` prints.

No process runs here: what the stack writes into its run folder, and what it tells a shell."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from streams.dev.localstack import LocalStack
from streams.dev.localstack.stack import SECURE_VARIABLES
from streams.dev.localstack.tls import LocalCertificates
from streams.dev.settings import LocalStackSettings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStackSettings:
    monkeypatch.chdir(tmp_path)
    return LocalStackSettings(local_data_dir=tmp_path / "run", cache_dir=tmp_path / "cache")


def test_the_server_certificate_chains_to_the_local_ca_for_loopback_only(tmp_path: Path) -> None:
    certificates = LocalCertificates(tmp_path / "tls")
    certificates.ensure()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certificates.server_certificate, certificates.server_key)  # a pair
    leaf = x509.load_pem_x509_certificate(certificates.server_certificate.read_bytes())
    leaf.verify_directly_issued_by(
        x509.load_pem_x509_certificate(certificates.ca_file.read_bytes()))
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1"}
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    for path in (certificates.ca_key, certificates.server_key, certificates.server_keystore):
        assert path.stat().st_mode & 0o077 == 0, path


def test_certificates_are_kept_until_a_month_before_they_expire(tmp_path: Path) -> None:
    certificates = LocalCertificates(tmp_path / "tls")
    certificates.ensure()
    first = certificates.ca_file.read_bytes()
    certificates.ensure()
    assert certificates.ca_file.read_bytes() == first
    certificates.ensure(now=datetime.now(UTC) + timedelta(days=800))
    assert certificates.ca_file.read_bytes() != first


def test_a_secure_stack_gives_its_operator_and_a_plain_one_unsets_it(
        settings: LocalStackSettings) -> None:
    secure = LocalStack(settings, secure=True).environment()
    assert secure["CIRCULATION_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert secure["CIRCULATION_SASL_USERNAME"] == "bus-admin"
    assert secure["CIRCULATION_SCHEMA_REGISTRY_URL"].startswith("https://")
    assert all(secure[name] for name in SECURE_VARIABLES)
    for name in ("CIRCULATION_SUBJECT_SECRET_FILE", "CIRCULATION_PSEUDONYM_SECRET_FILE"):
        assert Path(secure[name]).stat().st_mode & 0o077 == 0
    plain = LocalStack(settings, secure=False).environment()
    assert plain["CIRCULATION_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert plain["CIRCULATION_SCHEMA_REGISTRY_URL"].startswith("http://")
    assert all(plain[name] == "" for name in SECURE_VARIABLES)  # printed as `unset NAME`
