"""``acl sync`` against a broker holding what it did not expect: nothing holds up a removal."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from streams.security.access import Grant
from streams.security.acls import AclError, BrokerAcls, as_binding

KEPT = Grant("User:subscriber.ville-de-lyon", "group", "prefix", "subscriber.ville-de-lyon.",
             "Read")
STALE = Grant("User:subscriber.ugap", "topic", "literal", "deliver.ugap.ugap-marches", "Read")
NEW = Grant("User:provider.cnaf", "topic", "prefix", "provider.cnaf.", "Write")
TOKENS = AclBinding(ResourceType.UNKNOWN, "User:someone", ResourcePatternType.LITERAL,
                    "User:helper", "*", AclOperation.UNKNOWN, AclPermissionType.ALLOW)
"""What librdkafka reads back of an ACL newer than itself (``--operation CreateTokens
--user-principal …``): a resource type and an operation it calls UNKNOWN."""


def _done(value: Any = None, error: KafkaException | None = None) -> Future[Any]:
    future: Future[Any] = Future()
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
    return future


class FakeAdmin:
    """The broker's ACL calls, as confluent-kafka's AdminClient answers them."""

    def __init__(self, held: list[AclBinding], refuse_creates: bool = False) -> None:
        self.held = held
        self.refuse_creates = refuse_creates
        self.deleted: list[AclBindingFilter] = []

    def describe_acls(self, _: AclBindingFilter, request_timeout: float) -> Future[Any]:
        return _done(list(self.held))

    def create_acls(self, bindings: list[AclBinding],
                    request_timeout: float) -> dict[AclBinding, Future[Any]]:
        error = KafkaException(KafkaError(KafkaError.INVALID_REQUEST, "refused"))
        return {b: _done(error=error if self.refuse_creates else None) for b in bindings}

    def delete_acls(self, filters: list[AclBindingFilter],
                    request_timeout: float) -> dict[AclBindingFilter, Future[Any]]:
        self.deleted += filters
        return {f: _done([]) for f in filters}


def _deleted_grants(admin: FakeAdmin) -> set[tuple[str, str, str]]:
    return {(f.principal, f.name, f.operation.name) for f in admin.deleted}  # type: ignore[union-attr]


def test_an_acl_the_client_cannot_name_does_not_keep_a_stale_grant() -> None:
    admin = FakeAdmin([as_binding(KEPT), as_binding(STALE), TOKENS])
    acls = BrokerAcls(admin)  # type: ignore[arg-type]
    plan = acls.plan({KEPT})
    assert plan.remove == [STALE]
    assert plan.foreign == [TOKENS]
    with pytest.raises(AclError) as refused:
        acls.apply(plan)
    assert _deleted_grants(admin) == {(STALE.principal, STALE.resource, "READ")}
    assert "cannot delete" in str(refused.value)
    assert "User:helper" in str(refused.value)


def test_a_refused_creation_does_not_stop_the_removals() -> None:
    admin = FakeAdmin([as_binding(KEPT), as_binding(STALE)], refuse_creates=True)
    acls = BrokerAcls(admin)  # type: ignore[arg-type]
    with pytest.raises(AclError, match="did not create"):
        acls.apply(acls.plan({KEPT, NEW}))
    assert _deleted_grants(admin) == {(STALE.principal, STALE.resource, "READ")}


def test_a_clean_sync_raises_nothing() -> None:
    admin = FakeAdmin([as_binding(KEPT), as_binding(STALE)])
    acls = BrokerAcls(admin)  # type: ignore[arg-type]
    acls.apply(acls.plan({KEPT, NEW}))
    assert _deleted_grants(admin) == {(STALE.principal, STALE.resource, "READ")}
