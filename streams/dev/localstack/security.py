"""What a secure local stack keeps in its run folder: certificates and the bus's own passwords.

``circulation local up --secure`` makes them once; ``circulation local env`` prints them for a
shell. Everything here is owner-only. The passwords of providers and subscribers are never kept:
``circulation credentials create`` prints them once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streams.audit.checkpoints import new_key_pem
from streams.dev.localstack.tls import LocalCertificates
from streams.privacy.secret import generate_secret_file


@dataclass(frozen=True)
class LocalSecurity:
    """The secure stack's material under ``<run folder>/secure``."""

    run_dir: Path

    @property
    def folder(self) -> Path:
        return self.run_dir / "secure"

    @property
    def certificates(self) -> LocalCertificates:
        return LocalCertificates(self.folder / "tls")

    def password(self, name: str) -> str:
        """The password kept under ``name`` (``bus-admin``, ``bus-worker``, the identity
        server's own administrator…), made at first use."""
        path = self.folder / "passwords" / name
        self._private_folder()
        generate_secret_file(path)
        return path.read_text(encoding="ascii").strip()

    def secret_file(self, name: str) -> Path:
        """A bus secret (``subject`` or ``pseudonym``) generated into the run folder."""
        path = self.folder / "secrets" / f"{name}-secret"
        self._private_folder()
        generate_secret_file(path)
        return path

    def signing_key_file(self) -> Path:
        """The workers' audit checkpoint signing key (Ed25519, PEM), made at first use."""
        path = self.folder / "secrets" / "audit-signing-key.pem"
        self._private_folder()
        generate_secret_file(path, new_key_pem)
        return path

    def _private_folder(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.folder.chmod(0o700)
