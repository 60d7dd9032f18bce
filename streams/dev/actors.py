"""The demo's actors, each connected as itself: operator, gateway, worker, providers, subscribers.

On the secure stack every actor gets its own principal and a fresh credential (made through the
operator's ``bus-admin``, as ``circulation credentials`` makes them), and holds only the secret
its part needs: the subject secret for the providers publishing, the pseudonym secret for the
routing worker, both for the gateway (recording a consent withdrawal sends erasure notices under
the subscriber's pseudonyms), neither for the operator and the subscribers. On the plain stack
everyone shares the one unauthenticated connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from schemas.catalog import Catalog
from streams.dev.localstack import LocalStack
from streams.kafka import clients
from streams.security import principals
from streams.security.credentials import Credentials
from streams.security.identity import IdentityAdmin
from streams.settings import Settings


@dataclass(frozen=True)
class Actors:
    """Each actor's settings; ``worker`` is the routing worker's process environment."""

    operator: Settings
    gateway: Settings
    providers: dict[str, Settings]
    subscribers: dict[str, Settings]
    worker: dict[str, str]
    principals: list[str] = field(default_factory=list)

    def provider(self, provider_id: str) -> Settings:
        return self.providers.get(provider_id, self.operator)

    def subscriber(self, subscriber_id: str) -> Settings:
        return self.subscribers.get(subscriber_id, self.operator)


def actors_of(stack: LocalStack, catalog: Catalog, subscribers: list[str],
              environment: dict[str, str]) -> Actors:
    """The actors on ``stack``: their own principals when it is secure, one shared
    connection when it is not (``environment`` is the calling process's)."""
    if not stack.secure:
        shared = stack.settings.bus_settings()
        worker = {**environment, **stack.settings.bus_environment()}
        return Actors(shared, shared, {}, {}, worker)
    operator = stack.admin_settings()
    subject = stack.security.secret_file("subject")
    pseudonym = stack.security.secret_file("pseudonym")
    with IdentityAdmin.from_settings(operator) as identity:
        store = Credentials(clients.cluster_admin(operator), identity)

        def actor(name: str, secret: Path | None = None) -> Settings:
            password = store.renew(principals.Principal.parse(name)).password
            return _as(operator, name, password, secret)

        gateway = actor(principals.GATEWAY, subject).model_copy(
            update={"pseudonym_secret_file": pseudonym})
        providers = {p: actor(principals.provider(p).name, subject) for p in catalog.providers()}
        readers = {s: actor(principals.subscriber(s).name) for s in subscribers}
    worker = {**environment, **stack.environment(),
              "CIRCULATION_SASL_USERNAME": principals.WORKER,
              "CIRCULATION_SASL_PASSWORD": stack.security.password(principals.WORKER),
              "CIRCULATION_SCHEMA_REGISTRY_USERNAME": principals.WORKER,
              "CIRCULATION_SCHEMA_REGISTRY_PASSWORD": stack.security.password(principals.WORKER),
              "CIRCULATION_PSEUDONYM_SECRET_FILE": str(pseudonym)}
    worker.pop("CIRCULATION_SUBJECT_SECRET_FILE", None)
    names = [principals.ADMIN, principals.WORKER, gateway.sasl_username or "",
             *(s.sasl_username or "" for s in providers.values()),
             *(s.sasl_username or "" for s in readers.values())]
    return Actors(operator, gateway, providers, readers, worker, names)


def _as(operator: Settings, principal: str, password: str, subject_secret: Path | None
        ) -> Settings:
    """The operator's connection settings with another principal's credential."""
    secret = SecretStr(password)
    return operator.model_copy(update={
        "sasl_username": principal, "sasl_password": secret,
        "schema_registry_username": principal, "schema_registry_password": secret,
        "subject_secret_file": subject_secret})
