"""Principals' credentials: one user name and password for the broker (SCRAM) and the registry.

The broker keeps SCRAM credentials as salted hashes only; the password is made here, set on the
broker through the admin API (and on the registry's identity server as the principal's client
secret) and handed back to the caller once. Nothing here stores it, logs it or puts it in an
exception: ``circulation credentials create`` prints it and forgets it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal, Protocol

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from streams.kafka.clients import refusal
from streams.security.identity import IdentityError
from streams.security.principals import ADMIN, Principal

ITERATIONS = 8192
"""SCRAM-SHA-512 iterations: Kafka's maximum is 16,384 and its minimum 4,096; each
authentication costs the broker this many HMACs, once per connection."""
REQUEST_TIMEOUT = 30.0

RegistryRole = Literal["sr-admin", "sr-readonly"]


class CredentialError(RuntimeError):
    """A credential could not be made or changed; the message says why, never a secret."""


class RegistryAccounts(Protocol):
    """The registry's side of a credential: a client of its identity server."""

    def put_client(self, principal: str, password: str, role: RegistryRole) -> None: ...

    def clients(self) -> list[str]: ...


@dataclass(frozen=True)
class Credential:
    """What ``create`` and ``rotate`` print once: the password is never kept."""

    principal: str
    username: str
    password: str

    def as_json(self) -> dict[str, str]:
        return {"principal": self.principal, "username": self.username,
                "password": self.password}


@dataclass(frozen=True)
class Holder:
    """A principal as ``credentials list`` shows it: where it has a credential, no secret."""

    principal: str
    kafka: tuple[str, ...]
    registry: bool | None


def registry_role(principal: Principal) -> RegistryRole:
    """Only the operator registers or changes schemas; every other principal reads them."""
    return "sr-admin" if principal.name == ADMIN else "sr-readonly"


class Credentials:
    """Creates, rotates and lists credentials through the broker's admin API and, where the
    registry authenticates, its identity server."""

    def __init__(self, admin: AdminClient, registry: RegistryAccounts | None = None) -> None:
        self._admin = admin
        self._registry = registry

    def create(self, principal: Principal) -> Credential:
        """A new credential for a principal that has none, on the broker and the registry."""
        if self._on_broker(principal.name):
            raise CredentialError(f"{principal.name} already has a credential; use "
                                  "`circulation credentials rotate` to replace it")
        return self._set(principal)

    def rotate(self, principal: Principal) -> Credential:
        """A new password for a principal that has a credential; the old one stops working."""
        if not self._on_broker(principal.name):
            raise CredentialError(f"{principal.name} has no credential; use "
                                  "`circulation credentials create` first")
        return self._set(principal)

    def renew(self, principal: Principal) -> Credential:
        """A fresh credential, whether the principal had one or not (the demo's actors)."""
        return self._set(principal)

    def holders(self) -> list[Holder]:
        """Every principal holding a credential, with its SCRAM mechanisms and iterations."""
        described = self._describe()
        on_registry = set(self._registry.clients()) if self._registry else None
        names = sorted(set(described) | (on_registry or set()))
        return [Holder(name, described.get(name, ()),
                       None if on_registry is None else name in on_registry) for name in names]

    def _set(self, principal: Principal) -> Credential:
        password = secrets.token_urlsafe(32)
        upsert = UserScramCredentialUpsertion(
            principal.name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS),
            password.encode("ascii"))
        futures = self._admin.alter_user_scram_credentials(
            [upsert], request_timeout=REQUEST_TIMEOUT)
        try:
            for future in futures.values():
                future.result()
        except KafkaException as exc:
            raise CredentialError(f"the broker refused {principal.name}'s credential: "
                                  f"{refusal(exc)}") from None
        if self._registry is not None:
            try:
                self._registry.put_client(principal.name, password, registry_role(principal))
            except Exception as exc:  # any failure: the broker already holds the new password
                raise CredentialError(_half_set(principal.name, exc)) from None
        return Credential(principal.name, principal.name, password)

    def _on_broker(self, name: str) -> bool:
        return name in self._describe()

    def _describe(self) -> dict[str, tuple[str, ...]]:
        """SCRAM credentials by user: mechanism and iterations, never a salt or a hash."""
        try:
            answer = self._admin.describe_user_scram_credentials(request_timeout=REQUEST_TIMEOUT)
            assert not isinstance(answer, dict)  # a dict only when users are named
            described = answer.result()
        except KafkaException as exc:
            raise CredentialError(f"the broker did not list credentials: {refusal(exc)}"
                                  ) from None
        return {user: tuple(f"{info.mechanism.name}/{info.iterations}"
                            for info in description.scram_credential_infos)
                for user, description in described.items()}


def _half_set(name: str, exc: Exception) -> str:
    """What a credential set on the broker but not at the registry leaves, and what to do."""
    reason = str(exc) if isinstance(exc, IdentityError) else type(exc).__name__
    return (f"{name}'s new password was set on the broker, but the registry's identity server "
            f"did not take it ({reason}); the new password was not printed and is lost. The "
            f"broker no longer accepts {name}'s previous password, if it had one, while the "
            "registry still does: the credential is half rotated. Run `circulation credentials "
            f"rotate {name}` once the identity server answers")
