"""Apicurio Registry, whose Confluent-compatible API the project uses.

Its storage is an H2 database in a file beside the broker's data, not Apicurio's default
in-memory database: records on the topics carry schema ids, so a registry that forgets its
schemas when it restarts, while the broker keeps its records, leaves every record undecodable.
Both keep their state between ``up``s and ``--fresh`` wipes both.

In secure mode it serves HTTPS alone, on the same port, with the stack's server certificate, and
every API (its own and the Confluent-compatible one) wants a caller known to the identity server
(``identity.py``): a bearer token, or a user name and password that the registry exchanges for a
token as that client's credentials (basic client credentials, what Kafka clients and Confluent's
serializers send). What the caller may do comes from the token's realm roles: ``sr-admin``
writes, ``sr-readonly`` reads (Apicurio marks lookups by content, ``POST /subjects/{subject}``,
and compatibility checks against one version as reads).
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import httpx

from schemas.registry import verification
from streams.dev.localstack.errors import StackError
from streams.dev.localstack.fetch import registry_app
from streams.dev.localstack.process import ManagedProcess, java_binary
from streams.dev.localstack.security import LocalSecurity
from streams.dev.settings import LocalStackSettings
from streams.security.principals import ADMIN

CCOMPAT_PATH = "/apis/ccompat/v7"
TRUSTSTORE_PASSWORD = "circulation-local-ca"  # noqa: S105 (guards a public CA certificate alone)
"""Java wants a password on a PKCS #12 trust store; it holds nothing but the stack's CA."""


class SchemaRegistry:
    """Apicurio Registry's Quarkus app, its SQL storage on H2 in a file under the run folder."""

    name = "registry"

    def __init__(self, settings: LocalStackSettings, secure: bool = False) -> None:
        """``secure``: HTTPS, and authentication and role-based authorisation by the stack's
        identity server."""
        self.settings = settings
        self.secure = secure
        self.security = LocalSecurity(settings.local_run_dir)
        self.home = ((LocalSecurity(settings.local_run_dir).folder if secure
                      else settings.local_run_dir) / "registry")
        self.process = ManagedProcess(self.name, self.home)
        self.port = settings.local_registry_port
        self.storage_dir = self.home / "storage"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    @property
    def address(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"{scheme}://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    @property
    def has_storage(self) -> bool:
        """Whether a database from an earlier start exists (H2 names it ``<base>.mv.db``)."""
        return any(self.storage_dir.glob("*.mv.db"))

    def _database_url(self) -> str:
        return f"jdbc:h2:file:{Path(self.storage_dir, 'registry')}"

    def prepare(self, fresh: bool) -> list[str]:
        """Fetch the registry and return its command line (``fresh`` wipes its storage)."""
        runner = registry_app(self.settings.cache_dir, self.settings.local_registry_version,
                              self.settings.local_fetch_timeout)
        if fresh:
            shutil.rmtree(self.storage_dir, ignore_errors=True)
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        java = java_binary(self.settings)
        listening = self._secure_options(java) if self.secure else [
            f"-Dquarkus.http.port={self.port}"]
        return [
            java, "-Xms128m", "-Xmx512m", self.process.marker, *listening,
            "-Dquarkus.http.host=127.0.0.1",
            "-Dapicurio.storage.kind=sql", "-Dapicurio.storage.sql.kind=h2",
            f"-Dapicurio.datasource.url={self._database_url()}",
            "-Dquarkus.log.console.format=%d{HH:mm:ss} %-5p [%c{2.}] %s%e%n",
            "-jar", str(runner),
        ]

    def _secure_options(self, java: str) -> list[str]:
        """HTTPS only, OpenID Connect against the stack's realm, roles from the token."""
        certificates = self.security.certificates
        certificates.ensure()
        realm = self.settings.identity_url
        return [
            *self._trust(java),
            f"-Dquarkus.http.ssl-port={self.port}", "-Dquarkus.http.insecure-requests=disabled",
            f"-Dquarkus.http.ssl.certificate.files={certificates.server_certificate}",
            f"-Dquarkus.http.ssl.certificate.key-files={certificates.server_key}",
            "-Dquarkus.oidc.tenant-enabled=true", f"-Dquarkus.oidc.auth-server-url={realm}",
            f"-Dquarkus.oidc.token-path={realm}/protocol/openid-connect/token",
            "-Dapicurio.authn.basic-client-credentials.enabled=true",
            # Never reuse a token got for a user name and password: each request asks the
            # identity server again, so a rotated or deleted credential stops working at once
            # (the registry otherwise keeps the token until it nearly expires, 5 minutes).
            "-Dapicurio.authn.basic-client-credentials.cache-expiration-offset=86400",
            # A refused credential is remembered 1 minute (5 by default): one made just after
            # a refused try works soon.
            "-Dapicurio.authn.basic-client-credentials.cache-expiration=1",
            "-Dapicurio.auth.role-based-authorization=true", "-Dapicurio.auth.role-source=token",
        ]

    def _trust(self, java: str) -> list[str]:
        """Make the JVM trust the stack's CA (the identity server's certificate), from a trust
        store made again at each start: the CA may have been renewed."""
        store = self.home / "truststore.p12"
        store.unlink(missing_ok=True)
        keytool = Path(shutil.which(java) or java).resolve().parent / "keytool"
        done = subprocess.run(
            [str(keytool), "-importcert", "-noprompt", "-alias", "circulation-local-ca",
             "-file", str(self.security.certificates.ca_file), "-keystore", str(store),
             "-storetype", "PKCS12", "-storepass", TRUSTSTORE_PASSWORD],
            capture_output=True, text=True, check=False, timeout=60)
        if done.returncode != 0:
            raise StackError(f"registry: could not make a trust store of the stack's CA with "
                             f"{keytool}:\n{(done.stdout + done.stderr).strip()[-1000:]}")
        return [f"-Djavax.net.ssl.trustStore={store}", "-Djavax.net.ssl.trustStoreType=PKCS12",
                f"-Djavax.net.ssl.trustStorePassword={TRUSTSTORE_PASSWORD}"]

    def healthy(self) -> bool:
        """The Confluent-compatible API answers a subjects listing (in secure mode, over HTTPS
        to bus-admin: the identity server is up and trusted, and authentication works)."""
        auth: tuple[str, str] | None = None
        verify: ssl.SSLContext | bool = True
        try:
            if self.secure:
                auth = (ADMIN, self.security.password(ADMIN))
                verify = verification(self.security.certificates.ca_file)
            response = httpx.get(f"{self.address}/subjects", timeout=3.0, auth=auth,
                                 verify=verify)
        except (httpx.HTTPError, OSError):
            return False
        return response.status_code == 200
