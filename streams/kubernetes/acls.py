"""Grants as Strimzi ``KafkaUser`` ACL rules, and back.

One rule per resource, carrying every operation granted on it, so a user's resource reads as
the list of what it may touch. :func:`grants_of` is the exact inverse: the tests read the
rendered users back and compare them with :func:`~streams.security.access.entitlements`, so a
manifest can never grant more, or less, than the broker's own ACLs would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast, get_args

from streams.security.access import Grant, Operation, PatternType, ResourceType

Rule = dict[str, Any]
"""One entry of a ``KafkaUser``'s ``spec.authorization.acls``."""

class NotAGrant(ValueError):
    """An ACL rule the bus never renders (a deny rule, a host, an unknown type or operation)."""


def strimzi_acls(grants: Iterable[Grant]) -> list[Rule]:
    """The rules for ``grants`` (of one principal), in a stable order."""
    operations: dict[tuple[str, str, str], list[str]] = {}
    for grant in sorted(grants):
        key = (grant.resource_type, grant.pattern, grant.resource)
        operations.setdefault(key, []).append(grant.operation)
    return [{"type": "allow",
             "resource": {"type": kind, "name": name, "patternType": pattern},
             "operations": sorted(set(ops)), "host": "*"}
            for (kind, pattern, name), ops in sorted(operations.items())]


def grants_of(user: str, rules: Iterable[Mapping[str, Any]]) -> set[Grant]:
    """The grants that ``rules`` of KafkaUser ``user`` hold; :class:`NotAGrant` for a rule
    that says anything a grant cannot (so a hand-edited deny rule is not read as an allow)."""
    grants: set[Grant] = set()
    for rule in rules:
        if rule.get("type", "allow") != "allow" or rule.get("host", "*") != "*":
            raise NotAGrant(f"{user}: only allow rules from any host are grants")
        resource = rule["resource"]
        kind = cast(ResourceType, _member(resource["type"], get_args(ResourceType)))
        pattern = cast(PatternType, _member(resource.get("patternType", "literal"),
                                            get_args(PatternType)))
        grants.update(Grant(f"User:{user}", kind, pattern, resource["name"],
                            cast(Operation, _member(operation, get_args(Operation))))
                      for operation in rule["operations"])
    return grants


def _member(value: object, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed`` (a ``Literal``'s arguments), or :class:`NotAGrant`."""
    if not isinstance(value, str) or value not in allowed:
        raise NotAGrant(f"{value!r} is not one of {', '.join(allowed)}")
    return value
