"""Keycloak, the secure stack's identity server: who may read and who may write schemas.

Apicurio Registry authenticates with OpenID Connect only; Keycloak is the identity server it
is documented with, published on Maven Central as a zip like the registry. It listens on HTTPS
alone, on the loopback interface, with the stack's server certificate.

The distribution stays in the cache, shared by run folders, and is built once there for the
options every local stack uses (``build`` fixes build-time options such as the database; a start
that found them changed would rebuild and restart itself). Each run folder gets a Keycloak home
of its own whose ``lib``, ``conf``, ``providers`` and ``themes`` are links into the cache and
whose ``data`` (the H2 database, transaction logs, the realm to import) is its own, so realms
outlive restarts and ``--fresh`` wipes them with the rest.

The realm ``circulation`` is imported at every start and skipped once it exists: roles
``sr-admin``, ``sr-developer`` and ``sr-readonly`` (Apicurio's defaults), and the bus's clients
``bus-admin`` (``sr-admin``, and the realm-management roles to manage clients and their role
mappings, so its own credential is enough for ``circulation credentials``) and ``bus-worker``
(``sr-readonly``), their secrets the run folder's passwords. The master realm's administrator,
for a person at the console, gets the run folder's ``identity-admin`` password through the
environment, never the command line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx

from schemas.registry import verification
from streams.dev.localstack.errors import StackError
from streams.dev.localstack.fetch import identity_server_dist
from streams.dev.localstack.jdk import java_at_least, path_jdk
from streams.dev.localstack.private_files import write_private
from streams.dev.localstack.process import ManagedProcess
from streams.dev.localstack.registry import SchemaRegistry
from streams.dev.localstack.security import LocalSecurity
from streams.dev.settings import IDENTITY_REALM, LocalStackSettings
from streams.security.identity import (
    ADMIN_ROLE,
    READONLY_ROLE,
    REGISTRY_ROLES,
    client_representation,
)
from streams.security.principals import ADMIN, WORKER

KEYCLOAK_JAVA = 21
"""The oldest Java Keycloak 26 runs on."""
ADMIN_USER = "admin"
ADMIN_PASSWORD_NAME = "identity-admin"  # noqa: S105 (the name of its file, not a password)
"""The name of the master realm administrator's password in the run folder."""
BUILD_OPTIONS = ("--db=dev-file",)
"""Build-time options the cached distribution is built with (an H2 database in a file)."""
ADMIN_CLIENT_ROLES = ("manage-clients", "view-clients", "query-clients", "manage-users",
                      "view-users", "query-users", "view-realm")
"""bus-admin's realm-management roles: create, update and delete clients, map realm roles on
their service accounts (users), read the roles it maps."""

_JVM_OPTIONS = (
    "-XX:MetaspaceSize=96M", "-XX:MaxMetaspaceSize=256m", "-XX:+UseG1GC",
    "-XX:+ExitOnOutOfMemoryError", "-Dfile.encoding=UTF-8", "-Djava.security.egd=file:/dev/urandom",
    "-Duser.language=en", "-Duser.country=US",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.security=ALL-UNNAMED",
    "-Djava.util.concurrent.ForkJoinPool.common.threadFactory="
    "io.quarkus.bootstrap.forkjoin.QuarkusForkJoinWorkerThreadFactory",
    "-Djava.util.logging.manager=org.jboss.logmanager.LogManager",
    "-Dpicocli.disable.closures=true",
)
"""What Keycloak's own ``kc.sh`` gives the JVM (the stack starts java itself, so that the pid it
keeps is the server's and its marker is on that command line)."""
_SHARED = ("lib", "conf", "providers", "themes")
_BUILT = ".built"


def service_account(client_id: str, realm_roles: list[str],
                    management: tuple[str, ...] = ()) -> dict[str, Any]:
    """A client's service account as a realm import gives it its roles."""
    account: dict[str, Any] = {"username": f"service-account-{client_id}", "enabled": True,
                               "serviceAccountClientId": client_id, "realmRoles": realm_roles}
    if management:
        account["clientRoles"] = {"realm-management": list(management)}
    return account


def realm_import(admin_secret: str, worker_secret: str) -> dict[str, Any]:
    """The realm the stack imports: the registry's roles and the bus's two own clients."""
    return {
        "realm": IDENTITY_REALM, "enabled": True,
        "roles": {"realm": [{"name": role} for role in REGISTRY_ROLES]},
        "clients": [client_representation(ADMIN, admin_secret),
                    client_representation(WORKER, worker_secret)],
        "users": [service_account(ADMIN, [ADMIN_ROLE], ADMIN_CLIENT_ROLES),
                  service_account(WORKER, [READONLY_ROLE])],
    }


def identity_java(settings: LocalStackSettings) -> str:
    """The java Keycloak runs on: 21 or later, found when the setting does not name one."""
    return java_at_least(KEYCLOAK_JAVA, settings.local_identity_java_home,
                         "CIRCULATION_LOCAL_IDENTITY_JAVA_HOME", [settings.java_home, path_jdk()])


class IdentityServer:
    """Keycloak on HTTPS, its realm imported at start, its data in the run folder."""

    name = "identity"

    def __init__(self, settings: LocalStackSettings) -> None:
        self.settings = settings
        self.security = LocalSecurity(settings.local_run_dir)
        self.home = self.security.folder / "identity"
        self.keycloak_home = self.home / "home"
        self.data_dir = self.keycloak_home / "data"
        self.process = ManagedProcess(self.name, self.home, environment=self._environment)
        self.port = settings.local_identity_port

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    @property
    def address(self) -> str:
        """The realm's URL: the issuer of the registry's tokens."""
        return self.settings.identity_url

    def _environment(self) -> dict[str, str]:
        """The master realm's administrator, created at the first start only."""
        return {"KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN_USER,
                "KC_BOOTSTRAP_ADMIN_PASSWORD": self.security.password(ADMIN_PASSWORD_NAME)}

    def prepare(self, fresh: bool) -> list[str]:
        """Fetch and build Keycloak once, lay out this run folder's home, write the realm to
        import, and return the server's command line (``fresh`` wipes its data)."""
        java = identity_java(self.settings)
        dist = identity_server_dist(self.settings.cache_dir, self.settings.local_keycloak_version,
                                    self.settings.local_fetch_timeout)
        self._build(java, dist)
        if fresh:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self._lay_out(dist)
        certificates = self.security.certificates
        certificates.ensure()
        return [
            java, "-Xms64m", "-Xmx512m", self.process.marker, *self._jvm(self.keycloak_home),
            "start", "--optimized", "--http-enabled=false", "--http-host=127.0.0.1",
            f"--https-port={self.port}", f"--hostname=https://127.0.0.1:{self.port}",
            f"--https-certificate-file={certificates.server_certificate}",
            f"--https-certificate-key-file={certificates.server_key}",
            "--cache=local", f"--db-url={self._database_url()}", "--import-realm",
        ]

    def _database_url(self) -> str:
        """Keycloak's dev-file database, without its default AUTO_SERVER (a TCP port of its own)."""
        return f"jdbc:h2:file:{self.data_dir / 'h2' / 'keycloakdb'};NON_KEYWORDS=VALUE"

    @staticmethod
    def _jvm(home: Path) -> list[str]:
        return [*_JVM_OPTIONS, f"-Dkc.home.dir={home}", f"-Djboss.server.config.dir={home}/conf",
                "-cp", str(home / "lib" / "quarkus-run.jar"),
                "io.quarkus.bootstrap.runner.QuarkusEntryPoint"]

    def _build(self, java: str, dist: Path) -> None:
        """Build the cached distribution for :data:`BUILD_OPTIONS`, once."""
        marker = dist / _BUILT
        options = " ".join(BUILD_OPTIONS)
        if marker.exists() and marker.read_text(encoding="utf-8").strip() == options:
            return
        command = [java, "-Xmx512m", *self._jvm(dist), "build", *BUILD_OPTIONS]
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False,
                                  timeout=self.settings.local_fetch_timeout)
        except subprocess.TimeoutExpired as exc:
            raise StackError("identity: building Keycloak timed out") from exc
        if done.returncode != 0:
            raise StackError(f"identity: building Keycloak in {dist} failed:\n"
                             f"{(done.stdout + done.stderr).strip()[-2000:]}")
        marker.write_text(options + "\n", encoding="utf-8")

    def _lay_out(self, dist: Path) -> None:
        """The run folder's Keycloak home: links to the cache, owner-only data of its own (the
        database keeps the clients' secrets), and the realm to import."""
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.home.chmod(0o700)
        self.keycloak_home.mkdir(exist_ok=True)
        for name in _SHARED:
            link = self.keycloak_home / name
            if link.is_symlink() and link.resolve() == (dist / name).resolve():
                continue
            link.unlink(missing_ok=True)
            link.symlink_to(dist / name, target_is_directory=True)
        realm = realm_import(self.security.password(ADMIN), self.security.password(WORKER))
        write_private(self.data_dir / "import" / f"{IDENTITY_REALM}.json", json.dumps(realm))

    def healthy(self) -> bool:
        """The realm publishes its OpenID Connect configuration over HTTPS (so the server is
        up, the certificate chains to the stack's CA and the realm was imported)."""
        try:
            response = httpx.get(f"{self.address}/.well-known/openid-configuration",
                                 verify=verification(self.security.certificates.ca_file),
                                 timeout=3.0)
        except (httpx.HTTPError, OSError):
            return False
        return response.status_code == 200


def secure_components(settings: LocalStackSettings) -> tuple[IdentityServer, SchemaRegistry]:
    """The secure stack's identity server and the registry that authenticates against it, in
    the order they must start (the registry's health check needs a token)."""
    return IdentityServer(settings), SchemaRegistry(settings, secure=True)
