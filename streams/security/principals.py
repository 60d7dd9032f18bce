"""Who may connect to the bus: the principals, one per party and one per component.

A principal's name is its Kafka user name (SCRAM) and its client id at the registry's identity
server, so that one credential opens both. Providers and subscribers are named after the ids the
catalog and the contracts already use; the bus's own components have fixed names::

    provider.<provider>       writes its own provider topics (provider.cnaf)
    subscriber.<subscriber>   reads its own delivery topics (subscriber.ville-de-lyon)
    bus-worker                routes: reads provider and state topics, writes deliveries
    bus-gateway               writes provider topics and state for the callers it authenticates
    bus-sink                  reads delivery topics for the webhook and file sinks
    bus-admin                 the operator: topics, schemas, contracts, ACLs (a super user)

A principal's name is also a Kubernetes resource name (Strimzi's ``KafkaUser`` and the Secret
holding its password), which admits no underscore; catalog provider ids may have one
(``france_travail``) and never a hyphen, so a provider's principal spells it with a hyphen
(``provider.france-travail``) and two providers can never share one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ADMIN = "bus-admin"
WORKER = "bus-worker"
GATEWAY = "bus-gateway"
SINK = "bus-sink"
COMPONENTS = (ADMIN, WORKER, GATEWAY, SINK)
"""The bus's own principals, in the order a listing shows them."""

PROVIDER = "provider."
SUBSCRIBER = "subscriber."
_PARTY = re.compile(r"(provider|subscriber)\.([a-z0-9-]{2,64})")

Kind = Literal["admin", "component", "provider", "subscriber"]


class UnknownPrincipal(ValueError):
    """A name that is none of the bus's principals; the message says what is expected."""


@dataclass(frozen=True)
class Principal:
    """One principal: its name and what kind of party it is."""

    name: str
    kind: Kind

    @property
    def party(self) -> str | None:
        """The provider's or subscriber's id, for a party; None for a component."""
        return self.name.split(".", 1)[1] if self.kind in ("provider", "subscriber") else None

    @property
    def kafka(self) -> str:
        """The principal as Kafka's ACLs name it."""
        return f"User:{self.name}"

    @classmethod
    def parse(cls, name: str) -> Principal:
        """The principal called ``name``, or :class:`UnknownPrincipal` saying the forms."""
        if name == ADMIN:
            return cls(name, "admin")
        if name in COMPONENTS:
            return cls(name, "component")
        party = _PARTY.fullmatch(name)
        if party is None:
            raise UnknownPrincipal(
                "a principal is provider.<provider>, subscriber.<subscriber> (lower-case "
                f"letters, digits and hyphens) or one of {', '.join(COMPONENTS)}")
        return cls(name, "provider" if party.group(1) == "provider" else "subscriber")


def provider(provider_id: str) -> Principal:
    """The principal of catalog provider ``provider_id`` (underscores become hyphens)."""
    return Principal.parse(PROVIDER + provider_id.replace("_", "-"))


def subscriber(subscriber_id: str) -> Principal:
    """The principal of subscriber ``subscriber_id``."""
    return Principal.parse(SUBSCRIBER + subscriber_id)
