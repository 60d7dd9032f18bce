"""Credentials set on the broker and at the registry's identity server: a half-done change is
reported as one, never as a bare identity-server error, and never with the password."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import httpx
import pytest

from streams.security.credentials import CredentialError, Credentials, RegistryRole
from streams.security.identity import IdentityError
from streams.security.principals import Principal

WHO = Principal.parse("provider.cnaf")


class Described:
    def __init__(self) -> None:
        self.scram_credential_infos: list[Any] = []


class FakeAdmin:
    """The broker's SCRAM calls, as confluent-kafka's AdminClient answers them."""

    def __init__(self) -> None:
        self.passwords: dict[str, bytes] = {WHO.name: b"old"}

    def describe_user_scram_credentials(self, request_timeout: float) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result({name: Described() for name in self.passwords})
        return future

    def alter_user_scram_credentials(self, alterations: list[Any],
                                     request_timeout: float) -> dict[str, Future[Any]]:
        done: dict[str, Future[Any]] = {}
        for alteration in alterations:
            self.passwords[alteration.user] = alteration.password
            done[alteration.user] = Future()
            done[alteration.user].set_result(None)
        return done


class BrokenRegistry:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.tried: list[str] = []

    def put_client(self, principal: str, password: str, role: RegistryRole) -> None:
        self.tried.append(password)
        raise self.error

    def exists(self, principal: str) -> bool:
        return True

    def clients(self) -> list[str]:
        return [WHO.name]


@pytest.mark.parametrize("error", [
    IdentityError("could not update the client provider.cnaf: HTTP 503"),
    httpx.ReadTimeout("timed out"),
])
def test_a_rotation_the_registry_refuses_says_it_is_half_done(error: Exception) -> None:
    admin, registry = FakeAdmin(), BrokenRegistry(error)
    store = Credentials(admin, registry)  # type: ignore[arg-type]
    with pytest.raises(CredentialError) as refused:
        store.rotate(WHO)
    message = str(refused.value)
    assert admin.passwords[WHO.name] != b"old"  # the broker did change
    assert "half rotated" in message
    assert f"circulation credentials rotate {WHO.name}" in message
    assert registry.tried[0] not in message
    assert refused.value.__cause__ is None
