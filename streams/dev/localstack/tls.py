"""The secure local stack's certificates: a CA of its own and one certificate for its servers.

Made once per run folder with the ``cryptography`` package and kept there, owner-only, so that a
client configured with the CA file keeps trusting the stack across restarts. The CA's key never
leaves the run folder: nothing else is ever signed with it. The servers' certificate names
``127.0.0.1`` and ``localhost`` only: the stack listens on the loopback interface alone.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from streams.dev.localstack.private_files import write_private

VALIDITY = timedelta(days=825)
"""How long the local certificates last (the longest a browser accepts for a server's)."""
RENEW_BEFORE = timedelta(days=30)
SERVER_NAME = "circulation-local-server"
"""The servers' certificate's common name: the broker's principal on its controller listener."""


@dataclass(frozen=True)
class LocalCertificates:
    """Where the stack's CA and server certificate live in its run folder."""

    folder: Path

    @property
    def ca_file(self) -> Path:
        """The CA certificate every client of the stack trusts (``CIRCULATION_SSL_CAFILE``)."""
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca-key.pem"

    @property
    def server_certificate(self) -> Path:
        """The servers' certificate followed by the CA's: the chain they present."""
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        """The servers' private key (PKCS #8, unencrypted, owner-only)."""
        return self.folder / "server-key.pem"

    @property
    def server_keystore(self) -> Path:
        """Key then chain in one file, as Kafka reads a PEM key store."""
        return self.folder / "server-keystore.pem"

    def ensure(self, now: datetime | None = None) -> None:
        """Make the CA and the server certificate unless valid ones are already there."""
        now = now or datetime.now(UTC)
        if self._valid(now):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Circulation local"),
                             x509.NameAttribute(NameOID.COMMON_NAME, "Circulation local CA")])
        ca = (_builder(ca_name, ca_name, ca_key.public_key(), now)
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(
                  digital_signature=False, content_commitment=False, key_encipherment=False,
                  data_encipherment=False, key_agreement=False, key_cert_sign=True,
                  crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Circulation local"),
            x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)])
        server = (_builder(server_name, ca_name, server_key.public_key(), now)
                  .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                  .add_extension(x509.SubjectAlternativeName([
                      x509.DNSName("localhost"),
                      x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]), critical=False)
                  .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                        ExtendedKeyUsageOID.CLIENT_AUTH]),
                                 critical=False)
                  .sign(ca_key, hashes.SHA256()))
        ca_pem = ca.public_bytes(serialization.Encoding.PEM)
        chain = server.public_bytes(serialization.Encoding.PEM) + ca_pem
        key_pem = server_key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
        write_private(self.ca_key, ca_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        write_private(self.server_key, key_pem)
        write_private(self.server_keystore, key_pem + chain)
        write_private(self.server_certificate, chain)
        write_private(self.ca_file, ca_pem)  # written last: its presence means "complete"

    def _valid(self, now: datetime) -> bool:
        """Every file is there and the server certificate lasts at least another month."""
        files = (self.ca_file, self.ca_key, self.server_certificate, self.server_key,
                 self.server_keystore)
        if not all(path.is_file() for path in files):
            return False
        certificate = x509.load_pem_x509_certificate(self.server_certificate.read_bytes())
        return certificate.not_valid_after_utc - RENEW_BEFORE > now


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey,
             now: datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + VALIDITY))
