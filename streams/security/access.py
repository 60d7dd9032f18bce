"""What each principal may do on the broker, derived from the catalog and the applied contracts.

One function, :func:`entitlements`, says it; ``circulation acl sync`` makes the broker's ACLs
equal to it and ``circulation render k8s`` writes the same grants into Strimzi ``KafkaUser``
resources, so the laptop and the cluster cannot drift apart. Anything not granted here is denied:
the broker runs with ``allow.everyone.if.no.acl.found=false``.

- A provider writes its own provider topics (``provider.<id>.`` prefix) and nothing else.
- A subscriber reads the delivery topic of each contract that entitles it, and uses consumer
  groups prefixed ``subscriber.<id>.``. A contract entitles its subscriber from the day it is
  applied (even before it is in force: its topic is empty) until its retention has passed after
  it ended or was revoked, because the subscriber must still read the erasure notices that
  follow a revocation. No new delivery arrives there in that time: routing stops at the end.
- ``bus-worker`` reads provider and state topics and the audit trail's heads, writes deliveries,
  audit, signed audit checkpoints and dead letters, and commits the routers' group. It also
  runs the lag exporter, which describes the subscribers' groups and reads the timestamp of the
  oldest record each has not consumed: hence read on the delivery topics, which the worker
  wrote in the first place.
- ``bus-gateway`` writes provider topics and the consent and population topics on behalf of
  the callers it authenticates, and reads those state topics and the contracts. It also writes
  delivery topics, never reading them: a consent withdrawn there sends the subscriber an
  erasure notice at once. It reads ``bus.tokens``, the hashes of the callers' bearer tokens,
  which nobody else but the operator may read or write.
- ``bus-sink`` reads delivery topics through groups prefixed ``sink.``, and the contracts to
  find where each delivers; a delivery the subscriber's endpoint refused past the retry
  budget becomes a dead letter, so it writes ``bus.dlq`` too. The file sink deletes the files
  whose deliveries expired and audits each deletion in a chain of its own: it writes
  ``bus.audit``, and reads it to find its chain's head when it starts.
- ``bus-admin`` is a super user of the broker: it needs no grant.

Read, write and alter imply describe in Kafka, so no grant spells describe out beside them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal

from schemas.catalog import Catalog
from streams.kafka.topics import (
    AUDIT,
    AUDIT_CHECKPOINTS,
    CONSENTS,
    CONTRACTS,
    DLQ,
    POPULATION,
    PROVIDER_PREFIX,
    TOKENS,
)
from streams.security import principals
from streams.security.principals import Principal
from streams.state.contract import Contract

ResourceType = Literal["topic", "group", "cluster"]
PatternType = Literal["literal", "prefix"]
Operation = Literal["Read", "Write", "Describe", "Create", "Alter", "DescribeConfigs",
                    "AlterConfigs", "IdempotentWrite", "All"]

DELIVERY_PREFIX = "deliver."
ROUTER_GROUP = "circulation-router"
"""The routing workers' consumer group (the Faust app's id)."""
SUBSCRIBER_GROUPS = "subscriber."
SINK_GROUPS = "sink."


@dataclass(frozen=True, order=True)
class Grant:
    """One allowed operation of one principal on one resource (or resource prefix)."""

    principal: str
    resource_type: ResourceType
    pattern: PatternType
    resource: str
    operation: Operation


def entitled_until(contract: Contract) -> datetime | None:
    """When ``contract`` stops entitling its subscriber to read: its retention after it was
    revoked or ended (the end of its last valid day, UTC); None while it has no end."""
    retention = timedelta(milliseconds=contract.retention_ms)
    if contract.revoked and contract.revoked_at is not None:
        return contract.revoked_at + retention
    if contract.valid_until is None:
        return None
    ended = datetime.combine(contract.valid_until + timedelta(days=1), time(0), UTC)
    return ended + retention


def entitles(contract: Contract, at: datetime) -> bool:
    """Whether ``contract`` lets its subscriber read its delivery topic at ``at``."""
    until = entitled_until(contract)
    return until is None or at < until


def entitlements(catalog: Catalog, contracts: Iterable[Contract],
                 at: datetime | None = None) -> set[Grant]:
    """Every grant the broker must hold at ``at`` (now by default), and nothing more."""
    at = at or datetime.now(UTC)
    grants: set[Grant] = set()
    for provider_id in catalog.providers():
        grants |= _provider(principals.provider(provider_id), provider_id)
    for contract in contracts:
        if entitles(contract, at):
            grants |= _subscriber(principals.subscriber(contract.subscriber), contract)
    grants |= _worker() | _gateway() | _sink()
    return grants


def _allow(who: Principal, kind: ResourceType, pattern: PatternType, name: str,
           *operations: Operation) -> Iterator[Grant]:
    for operation in operations:
        yield Grant(who.kafka, kind, pattern, name, operation)


def _provider(who: Principal, provider_id: str) -> set[Grant]:
    """The provider's topics are named by its catalog id, which its principal may respell."""
    return set(_allow(who, "topic", "prefix", f"{PROVIDER_PREFIX}{provider_id}.", "Write"))


def _subscriber(who: Principal, contract: Contract) -> set[Grant]:
    return {*_allow(who, "topic", "literal", contract.delivery_topic, "Read"),
            *_allow(who, "group", "prefix", f"{who.name}.", "Read")}


def _worker() -> set[Grant]:
    who = Principal.parse(principals.WORKER)
    return {
        *_allow(who, "topic", "prefix", PROVIDER_PREFIX, "Read"),
        *_allow(who, "group", "literal", ROUTER_GROUP, "Read"),
        *(grant for topic in (CONTRACTS, CONSENTS, POPULATION)
          for grant in _allow(who, "topic", "literal", topic, "Read")),
        *_allow(who, "topic", "literal", AUDIT, "Read", "Write"),
        *_allow(who, "topic", "literal", AUDIT_CHECKPOINTS, "Write"),
        *_allow(who, "topic", "literal", DLQ, "Write"),
        *_allow(who, "topic", "prefix", DELIVERY_PREFIX, "Read", "Write"),
        *_allow(who, "group", "prefix", SUBSCRIBER_GROUPS, "Describe"),
        *_allow(who, "group", "prefix", SINK_GROUPS, "Describe"),
    }


def _gateway() -> set[Grant]:
    who = Principal.parse(principals.GATEWAY)
    return {
        *_allow(who, "topic", "prefix", PROVIDER_PREFIX, "Write"),
        *(grant for topic in (CONSENTS, POPULATION)
          for grant in _allow(who, "topic", "literal", topic, "Read", "Write")),
        *_allow(who, "topic", "literal", CONTRACTS, "Read"),
        *_allow(who, "topic", "literal", TOKENS, "Read"),
        *_allow(who, "topic", "literal", AUDIT, "Read"),  # the citizen journal's view
        *_allow(who, "topic", "prefix", DELIVERY_PREFIX, "Write"),
    }


def _sink() -> set[Grant]:
    who = Principal.parse(principals.SINK)
    return {*_allow(who, "topic", "prefix", DELIVERY_PREFIX, "Read"),
            *_allow(who, "group", "prefix", SINK_GROUPS, "Read"),
            *_allow(who, "topic", "literal", CONTRACTS, "Read"),
            *_allow(who, "topic", "literal", DLQ, "Write"),
            *_allow(who, "topic", "literal", AUDIT, "Read", "Write")}


def by_principal(grants: Iterable[Grant]) -> dict[str, list[Grant]]:
    """Grants grouped by principal name (``User:`` left off), each group sorted."""
    grouped: dict[str, list[Grant]] = {}
    for grant in sorted(grants):
        grouped.setdefault(grant.principal.removeprefix("User:"), []).append(grant)
    return grouped
