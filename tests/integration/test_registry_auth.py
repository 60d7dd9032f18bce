"""The secure registry: only bus-admin writes schemas, every principal reads, and a credential
is exactly what ``circulation credentials`` last set.

A real Keycloak and a real Apicurio in secure mode run on private ports (ending in 5 and 6, which
no private stack takes) in a run folder of their own, sharing only the jar cache; principals are
made through :class:`IdentityAdmin` as the commands will.
"""

from __future__ import annotations

import os
import secrets
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from schemas.registry import RegistryError, SchemaRegistry, canonical
from streams.dev.localstack.identity import IdentityServer, secure_components
from streams.dev.localstack.process import ManagedProcess
from streams.dev.localstack.registry import SchemaRegistry as RegistryComponent
from streams.dev.localstack.security import LocalSecurity
from streams.dev.settings import LocalStackSettings
from streams.security.identity import IdentityAdmin, IdentityError
from streams.security.principals import ADMIN, WORKER
from streams.settings import Settings
from tests.integration.private_stack import PRIVATE_PORTS, PRIVATE_SLOTS

SCHEMA = {"type": "record", "name": "Probe", "namespace": "test.auth",
          "fields": [{"name": "a", "type": "string"}]}
START_TIMEOUT = 240.0


@dataclass(frozen=True)
class SecureRegistry:
    """The running pair and what a test needs to talk to them."""

    settings: LocalStackSettings
    identity: IdentityServer
    registry: RegistryComponent
    security: LocalSecurity

    @property
    def cafile(self) -> Path:
        return self.security.certificates.ca_file

    def client(self, username: str, password: str) -> SchemaRegistry:
        return SchemaRegistry(self.registry.address, auth=(username, password),
                              cafile=self.cafile)

    def admin(self) -> IdentityAdmin:
        """IdentityAdmin as the commands build it: from the bus's settings, as bus-admin."""
        return IdentityAdmin.from_settings(Settings(
            identity_url=self.settings.identity_url, sasl_username=ADMIN,
            sasl_password=self.security.password(ADMIN), ssl_cafile=self.cafile))


def _start(component: IdentityServer | RegistryComponent) -> float:
    """Start ``component`` and wait until it answers; return how long that took."""
    began = time.monotonic()
    component.process.start(component.prepare(fresh=False))
    deadline = began + START_TIMEOUT
    while time.monotonic() < deadline:
        if component.process.exited():
            raise component.process.fail("exited during start")
        if component.healthy():
            return time.monotonic() - began
        time.sleep(0.5)
    raise component.process.fail(f"did not answer within {START_TIMEOUT:.0f}s")


def _stop(process: ManagedProcess) -> None:
    process.stop(grace=20)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRegistry]:
    port = PRIVATE_PORTS + os.getpid() % PRIVATE_SLOTS * 10 + 5
    settings = LocalStackSettings(local_data_dir=tmp_path_factory.mktemp("secure") / "run",
                                  local_identity_port=port, local_registry_port=port + 1)
    identity, registry = secure_components(settings)
    try:
        print(f"identity server started in {_start(identity):.1f}s")
        print(f"secure registry started in {_start(registry):.1f}s")
        yield SecureRegistry(settings, identity, registry, LocalSecurity(settings.local_run_dir))
    finally:
        _stop(registry.process)
        _stop(identity.process)


def _party(kind: str) -> str:
    return f"{kind}.auth-{uuid.uuid4().hex[:8]}"


def _password() -> str:
    return secrets.token_hex(32)


def _subject() -> str:
    return f"test.auth.{uuid.uuid4().hex[:10]}-value"


def _refusal(call: object) -> str:
    """The message of the RegistryError ``call`` raises."""
    assert callable(call)
    with pytest.raises(RegistryError) as refused:
        call()
    return str(refused.value)


def test_providers_and_subscribers_read_but_never_write(secure: SecureRegistry) -> None:
    subject = _subject()
    with secure.client(ADMIN, secure.security.password(ADMIN)) as admin:
        schema_id = admin.register(subject, SCHEMA)
    with secure.admin() as identity:
        parties = {name: _password() for name in (_party("provider"), _party("subscriber"))}
        for name, password in parties.items():
            identity.put_client(name, password, "sr-readonly")
    for name, password in parties.items():
        with secure.client(name, password) as reader:
            refused = _refusal(lambda r=reader: r.register(_subject(), SCHEMA))
            assert "HTTP 403" in refused
            assert password not in refused
            assert "HTTP 403" in _refusal(lambda r=reader: r.set_compatibility(subject, "NONE"))
            assert reader.schema(schema_id) == SCHEMA
            assert subject in reader.subjects()
            assert reader.versions(subject) == [1]
            assert reader.is_compatible(subject, SCHEMA)
        assert _lookup(secure, (name, password), subject) == schema_id


def _lookup(secure: SecureRegistry, auth: tuple[str, str], subject: str) -> int:
    """``POST /subjects/{subject}``: the id of a schema already registered under a subject,
    as the publisher looks it up."""
    response = httpx.post(f"{secure.registry.address}/subjects/{subject}", auth=auth,
                          json={"schema": canonical(SCHEMA), "schemaType": "AVRO"},
                          verify=ssl.create_default_context(cafile=str(secure.cafile)),
                          timeout=10)
    assert response.status_code == 200, response.text
    return int(response.json()["id"])


def test_the_bus_worker_reads_and_bus_admin_writes(secure: SecureRegistry) -> None:
    subject = _subject()
    with secure.client(ADMIN, secure.security.password(ADMIN)) as admin:
        schema_id = admin.register(subject, SCHEMA)
        admin.set_compatibility(subject, "BACKWARD")
    with secure.client(WORKER, secure.security.password(WORKER)) as worker:
        assert worker.schema(schema_id) == SCHEMA
        assert "HTTP 403" in _refusal(lambda: worker.register(_subject(), SCHEMA))


def test_wrong_password_and_unknown_user_are_refused(secure: SecureRegistry) -> None:
    name, password = _party("subscriber"), _password()
    with secure.admin() as identity:
        identity.put_client(name, password, "sr-readonly")
    wrong = _password()
    for username, secret in ((name, wrong), (_party("provider"), wrong), (ADMIN, wrong)):
        with secure.client(username, secret) as stranger:
            refused = _refusal(stranger.subjects)
            assert "HTTP 401" in refused
            assert secret not in refused
    with SchemaRegistry(secure.registry.address, cafile=secure.cafile) as anonymous:
        assert "HTTP 401" in _refusal(anonymous.subjects)


def test_a_rotated_password_is_refused_at_once(secure: SecureRegistry) -> None:
    name, old, new = _party("provider"), _password(), _password()
    with secure.admin() as identity:
        identity.put_client(name, old, "sr-readonly")
        with secure.client(name, old) as before:
            before.subjects()  # the old password works, and the registry saw it succeed
        identity.put_client(name, new, "sr-readonly")
    with secure.client(name, old) as stale:
        refused = _refusal(stale.subjects)
        assert "HTTP 401" in refused
        assert old not in refused
    with secure.client(name, new) as rotated:
        rotated.subjects()


def test_a_changed_role_applies_and_a_deleted_client_is_refused(
        secure: SecureRegistry) -> None:
    name, password = _party("provider"), _password()
    with secure.admin() as identity:
        identity.put_client(name, password, "sr-admin")
        with secure.client(name, password) as writer:
            writer.register(_subject(), SCHEMA)
        identity.put_client(name, password, "sr-readonly")
        with secure.client(name, password) as reader:
            assert "HTTP 403" in _refusal(lambda: reader.register(_subject(), SCHEMA))
        listed = identity.clients()
        assert {ADMIN, WORKER, name} <= set(listed)
        assert not any(name.startswith(("account", "admin-cli", "realm-management"))
                       for name in listed)
        assert identity.exists(name)
        assert identity.delete(name)
        assert not identity.exists(name)
        assert not identity.delete(name)
    with secure.client(name, password) as deleted:
        assert "HTTP 401" in _refusal(deleted.subjects)


def test_identity_errors_never_carry_a_secret(secure: SecureRegistry) -> None:
    wrong = _password()
    with IdentityAdmin(secure.settings.identity_url, ADMIN, wrong,
                       cafile=secure.cafile) as impostor, pytest.raises(IdentityError) as refused:
        impostor.put_client(_party("provider"), wrong, "sr-readonly")
    assert "HTTP 401" in str(refused.value)
    assert wrong not in str(refused.value)
    password = _password()
    with secure.admin() as identity, pytest.raises(IdentityError) as invalid:
        identity.put_client("not a principal", password, "sr-readonly")
    assert password not in str(invalid.value)
    logs = [secure.identity.process.log_file, secure.registry.process.log_file]
    text = "".join(log.read_text(encoding="utf-8", errors="replace") for log in logs)
    for kept in (ADMIN, WORKER, "identity-admin"):
        assert secure.security.password(kept) not in text


def test_principals_outlive_a_restart_of_the_identity_server(secure: SecureRegistry) -> None:
    name, password = _party("subscriber"), _password()
    with secure.admin() as identity:
        identity.put_client(name, password, "sr-readonly")
    _stop(secure.identity.process)
    print(f"identity server restarted in {_start(secure.identity):.1f}s")
    with secure.client(name, password) as reader:
        assert isinstance(reader.subjects(), list)
