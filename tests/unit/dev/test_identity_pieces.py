"""The secure stack's pure parts: which JDK runs Keycloak, the realm it imports, where its
admin API is, and the registry's secure command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.dev.localstack.errors import StackError
from streams.dev.localstack.identity import realm_import
from streams.dev.localstack.jdk import java_at_least, major_version, newest_at_least
from streams.dev.settings import LocalStackSettings
from streams.security.identity import (
    PRINCIPAL_ATTRIBUTE,
    IdentityAdmin,
    IdentityError,
    admin_url,
)


def _jdk(folder: Path, version: str) -> Path:
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "java").write_text("")
    (folder / "release").write_text(f'IMPLEMENTOR="x"\nJAVA_VERSION="{version}"\n')
    return folder


@pytest.mark.parametrize(("release", "major"), [
    ('JAVA_VERSION="21.0.5"', 21), ('JAVA_VERSION="25"', 25), ('JAVA_VERSION="1.8.0_402"', 8),
    ("nothing", None)])
def test_major_version_reads_the_release_file(release: str, major: int | None) -> None:
    assert major_version(release) == major


def test_the_first_recent_enough_jdk_is_taken(tmp_path: Path) -> None:
    old, new = _jdk(tmp_path / "17", "17.0.15"), _jdk(tmp_path / "25", "25.0.1")
    assert newest_at_least(21, [None, old, new, tmp_path / "missing"]) == new
    assert newest_at_least(21, [old]) is None


def test_a_too_old_jdk_in_the_setting_is_refused_by_name(tmp_path: Path) -> None:
    old = _jdk(tmp_path / "17", "17.0.15")
    with pytest.raises(StackError, match="CIRCULATION_LOCAL_IDENTITY_JAVA_HOME"):
        java_at_least(21, old, "CIRCULATION_LOCAL_IDENTITY_JAVA_HOME", [])
    new = _jdk(tmp_path / "21", "21.0.5")
    assert java_at_least(21, new, "X", []) == str(new / "bin" / "java")


def test_the_realm_gives_bus_admin_writes_and_bus_worker_reads() -> None:
    realm = realm_import("admin-secret", "worker-secret")
    assert {role["name"] for role in realm["roles"]["realm"]} == {
        "sr-admin", "sr-developer", "sr-readonly"}
    clients = {client["clientId"]: client for client in realm["clients"]}
    assert clients["bus-admin"]["secret"] == "admin-secret"
    assert clients["bus-worker"]["secret"] == "worker-secret"
    for client in clients.values():
        assert client["serviceAccountsEnabled"]
        assert not client["publicClient"]
        assert not client["directAccessGrantsEnabled"]
        assert not client["standardFlowEnabled"]
        assert client["attributes"][PRINCIPAL_ATTRIBUTE] == "true"
    accounts = {user["serviceAccountClientId"]: user for user in realm["users"]}
    assert accounts["bus-admin"]["realmRoles"] == ["sr-admin"]
    assert "manage-clients" in accounts["bus-admin"]["clientRoles"]["realm-management"]
    assert accounts["bus-worker"]["realmRoles"] == ["sr-readonly"]
    assert "clientRoles" not in accounts["bus-worker"]


def test_the_admin_api_is_found_from_the_issuer() -> None:
    assert (admin_url("https://127.0.0.1:8180/realms/circulation/")
            == "https://127.0.0.1:8180/admin/realms/circulation")
    for wrong in ("https://127.0.0.1:8180", "https://h/realms/", "https://h/realms/a/b"):
        with pytest.raises(IdentityError, match="realm's URL"):
            admin_url(wrong)


def test_the_identity_url_names_the_realm_on_its_port() -> None:
    settings = LocalStackSettings(local_identity_port=25180)
    assert settings.identity_url == "https://127.0.0.1:25180/realms/circulation"


def test_the_identity_server_is_never_sent_a_secret_over_plain_http() -> None:
    with pytest.raises(IdentityError, match="plain http") as refused:
        IdentityAdmin("http://keycloak.example:8080/realms/circulation", "bus-admin", "s3cret")
    assert "s3cret" not in str(refused.value)
