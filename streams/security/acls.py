"""The broker's ACLs made equal to the grants the catalog and the contracts entitle.

``circulation acl sync`` reads every ACL the broker holds, compares it with
:func:`streams.security.access.entitlements` and adds what is missing and removes the rest: an
ACL the bus did not derive (written by hand, left from a revoked contract past its retention, or
for a principal that no longer exists) is an entitlement nobody can account for, so it goes.
Deny rules and rules restricted to a host are never derived, so they are removed too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, get_args

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from schemas.catalog import Catalog
from streams.kafka import clients
from streams.kafka.clients import refusal
from streams.security.access import Grant, Operation, PatternType, entitlements
from streams.security.access import ResourceType as Kind
from streams.settings import Settings
from streams.state.contract_store import ContractStore

REQUEST_TIMEOUT = 30.0
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefix": ResourcePatternType.PREFIXED}
_KINDS = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
          "cluster": ResourceType.BROKER}


class AclError(RuntimeError):
    """The broker refused to list, create or delete ACLs; the message says which and why."""


def _snake(operation: str) -> str:
    """``DescribeConfigs`` as librdkafka's enum names it: ``DESCRIBE_CONFIGS``."""
    return "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(operation)).upper()


_OPERATIONS = {name: AclOperation[_snake(name)] for name in get_args(Operation)}


@dataclass(frozen=True)
class AclPlan:
    """What a sync adds and removes; bindings the bus cannot read as grants are removed."""

    add: list[Grant] = field(default_factory=list)
    remove: list[Grant] = field(default_factory=list)
    foreign: list[AclBinding] = field(default_factory=list)
    kept: int = 0

    @property
    def removed(self) -> int:
        """How many ACLs go: grants no longer entitled, and bindings that are no grant."""
        return len(self.remove) + len(self.foreign)

    def summary(self) -> str:
        """``N added, N removed, N kept``, for one line of output."""
        return f"{len(self.add)} added, {self.removed} removed, {self.kept} kept"

    def as_json(self) -> dict[str, Any]:
        return {"add": [_grant_json(g) for g in self.add],
                "remove": [_grant_json(g) for g in self.remove]
                + [_binding_json(b) for b in self.foreign],
                "unchanged": self.kept}


class BrokerAcls:
    """The broker's ACLs through confluent-kafka's admin client (aiokafka has no ACL calls)."""

    def __init__(self, admin: AdminClient) -> None:
        self._admin = admin

    def bindings(self) -> list[AclBinding]:
        """Every ACL binding the broker holds."""
        every = AclBindingFilter(  # None matches any name, principal and host
            ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
            AclOperation.ANY, AclPermissionType.ANY)
        try:
            return list(self._admin.describe_acls(every, request_timeout=REQUEST_TIMEOUT)
                        .result())
        except KafkaException as exc:
            raise AclError(f"the broker did not list its ACLs: {refusal(exc)}") from None

    def plan(self, wanted: Iterable[Grant]) -> AclPlan:
        """What makes the broker hold exactly ``wanted``."""
        wanted = set(wanted)
        held: set[Grant] = set()
        foreign: list[AclBinding] = []
        for binding in self.bindings():
            grant = as_grant(binding)
            if grant is None:
                foreign.append(binding)
            else:
                held.add(grant)
        return AclPlan(add=sorted(wanted - held), remove=sorted(held - wanted),
                       foreign=foreign, kept=len(held & wanted))

    def apply(self, plan: AclPlan) -> None:
        """Create what ``plan`` adds, then delete what it removes: a grant that stays is never
        missing in between.

        Every removal is attempted even when a creation failed, and a binding this client
        cannot name (a resource type or operation newer than librdkafka, which it reads back
        as ``UNKNOWN`` and will not put in a filter) never holds up the others: one stray ACL
        must not keep a revoked subscriber's access alive. What could not be done is raised
        at the end, as one :class:`AclError`."""
        problems: list[str] = []
        if plan.add:
            problems += self._settle(self._admin.create_acls(
                [as_binding(g) for g in plan.add], request_timeout=REQUEST_TIMEOUT), "create")
        removed = [as_binding(g) for g in plan.remove]
        removed += [b for b in plan.foreign if _expressible(b)]
        if removed:
            problems += self._settle(self._admin.delete_acls(
                [_exact(b) for b in removed], request_timeout=REQUEST_TIMEOUT), "delete")
        problems += [f"this client cannot delete {_described(b)} (a resource type or operation "
                     "it does not know): delete it with Kafka's kafka-acls tool"
                     for b in plan.foreign if not _expressible(b)]
        if problems:
            raise AclError("; ".join(problems))

    @staticmethod
    def _settle(futures: Mapping[Any, Future[Any]], verb: str) -> list[str]:
        """Wait for every request; what the broker refused, one line each."""
        problems = []
        for future in futures.values():
            try:
                future.result()
            except KafkaException as exc:
                problems.append(f"the broker did not {verb} an ACL: {refusal(exc)}")
        return problems


async def synchronise(settings: Settings, dry_run: bool = False,
                      at: datetime | None = None) -> AclPlan:
    """Plan the ACLs the contracts applied on the bus entitle at ``at`` (now) and, unless
    ``dry_run``, make the broker hold exactly those."""
    catalog = Catalog.load()
    with clients.schema_registry(settings) as registry:
        contracts = await ContractStore(settings, registry, catalog).load()
    acls = BrokerAcls(clients.cluster_admin(settings))
    plan = acls.plan(entitlements(catalog, contracts.values(), at or datetime.now(UTC)))
    if not dry_run:
        acls.apply(plan)
    return plan


def as_binding(grant: Grant) -> AclBinding:
    """The broker's binding for ``grant``: allowed from any host."""
    return AclBinding(_KINDS[grant.resource_type], grant.resource, _PATTERNS[grant.pattern],
                      grant.principal, "*", _OPERATIONS[grant.operation],
                      AclPermissionType.ALLOW)


def as_grant(binding: AclBinding) -> Grant | None:
    """The grant ``binding`` expresses, or None when it is nothing the bus derives (a deny, a
    host restriction, another resource type or operation)."""
    kinds = {value: key for key, value in _KINDS.items()}
    patterns = {value: key for key, value in _PATTERNS.items()}
    operations = {value: key for key, value in _OPERATIONS.items()}
    if (binding.permission_type != AclPermissionType.ALLOW or binding.host != "*"
            or binding.restype not in kinds or binding.resource_pattern_type not in patterns
            or binding.operation not in operations):
        return None
    kind: Kind = kinds[binding.restype]  # type: ignore[assignment]
    pattern: PatternType = patterns[binding.resource_pattern_type]  # type: ignore[assignment]
    operation: Operation = operations[binding.operation]
    return Grant(binding.principal, kind, pattern, binding.name, operation)


def _expressible(binding: AclBinding) -> bool:
    """Whether librdkafka can name ``binding`` in a filter (it refuses ``UNKNOWN`` values)."""
    return not any(getattr(value, "name", None) == "UNKNOWN" for value in (
        binding.restype, binding.resource_pattern_type, binding.operation,
        binding.permission_type))


def _described(binding: AclBinding) -> str:
    entry = _binding_json(binding)
    return (f"the ACL {entry['permission']} {entry['operation']} on {entry['resource_type']} "
            f"{entry['resource']!r} ({entry['pattern']}) for {entry['principal']} from host "
            f"{entry['host']}")


def _exact(binding: AclBinding) -> AclBindingFilter:
    return AclBindingFilter(binding.restype, binding.name, binding.resource_pattern_type,
                            binding.principal, binding.host, binding.operation,
                            binding.permission_type)


def _grant_json(grant: Grant) -> dict[str, str]:
    return {"principal": grant.principal, "resource_type": grant.resource_type,
            "pattern": grant.pattern, "resource": grant.resource, "operation": grant.operation}


def _binding_json(binding: AclBinding) -> dict[str, str]:
    return {"principal": binding.principal, "resource_type": _named(binding.restype),
            "pattern": _named(binding.resource_pattern_type), "resource": binding.name,
            "operation": _named(binding.operation), "host": binding.host,
            "permission": _named(binding.permission_type)}


def _named(value: object) -> str:
    """An enum member of the client's (its annotations also allow str and int)."""
    return str(getattr(value, "name", value)).lower()
