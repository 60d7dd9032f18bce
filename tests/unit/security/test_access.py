"""Entitlements: what each principal may do, derived from the catalog and the contracts.

Pure functions, no broker: the integration tests check the broker enforces them
(``tests/integration/test_security.py``); these check the derivation itself, at its edges.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from schemas.catalog import Catalog
from streams.security import principals
from streams.security.access import (
    Grant,
    by_principal,
    entitled_until,
    entitlements,
    entitles,
)
from streams.security.acls import as_binding, as_grant
from streams.state.contract import Contract

CATALOG = Catalog.load()


def _contract(**changes: Any) -> Contract:
    fields: dict[str, Any] = {
        "id": "lyon-cantine-2026", "subscriber": "ville-de-lyon",
        "subscriber_siret": "21690123100011", "purpose": "Tarification sociale",
        "legal_basis": "CRPA art. L114-8", "datasets": {"quotient_familial": ["annee"]},
        "consent": "opt_in", "population": "enrolled", "retention": "P90D",
        "valid_from": date(2026, 1, 1), "valid_until": date(2026, 12, 31)}
    return Contract.checked({**fields, **changes}, CATALOG)


def test_a_contract_entitles_until_its_retention_after_its_last_day() -> None:
    contract = _contract()
    until = entitled_until(contract)
    assert until == datetime(2027, 1, 1, tzinfo=UTC) + timedelta(days=90)
    assert entitles(contract, until - timedelta(milliseconds=1))
    assert not entitles(contract, until)
    assert entitled_until(_contract(valid_until=None)) is None


def test_a_revoked_contract_entitles_until_its_retention_after_the_revocation() -> None:
    revoked_at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    contract = _contract().revoke(revoked_at)
    assert entitled_until(contract) == revoked_at + timedelta(days=90)
    assert entitles(contract, revoked_at + timedelta(days=89))
    assert not entitles(contract, revoked_at + timedelta(days=90))


def test_a_subscriber_gets_its_contract_s_topic_and_groups_and_nothing_else() -> None:
    at = datetime(2026, 6, 1, tzinfo=UTC)
    grants = by_principal(entitlements(CATALOG, [_contract()], at))
    assert grants["subscriber.ville-de-lyon"] == sorted([
        Grant("User:subscriber.ville-de-lyon", "topic", "literal",
              "deliver.ville-de-lyon.lyon-cantine-2026", "Read"),
        Grant("User:subscriber.ville-de-lyon", "group", "prefix", "subscriber.ville-de-lyon.",
              "Read")])
    later = by_principal(entitlements(CATALOG, [_contract()], datetime(2028, 1, 1, tzinfo=UTC)))
    assert "subscriber.ville-de-lyon" not in later


def test_no_party_s_prefix_covers_another_s_names() -> None:
    """The trailing dot keeps ``subscriber.lyon.`` from covering ``subscriber.lyon-2.…``."""
    at = datetime(2026, 6, 1, tzinfo=UTC)
    contracts = [_contract(), _contract(id="lyon-2-cantine", subscriber="ville-de-lyon-2",
                                        subscriber_siret="21690123100029")]
    grants = entitlements(CATALOG, contracts, at)
    for grant in grants:
        if grant.pattern != "prefix" or not grant.principal.startswith("User:subscriber."):
            continue
        owner = grant.principal.removeprefix("User:")
        for other in {g.resource for g in grants if g.principal != grant.principal
                      and g.principal.startswith("User:subscriber.")}:
            assert not other.startswith(grant.resource), (owner, other)


def test_the_bus_components_never_read_what_they_do_not_need() -> None:
    grants = by_principal(entitlements(CATALOG, []))
    reads = {name: {(g.resource_type, g.resource) for g in found if g.operation == "Read"}
             for name, found in grants.items()}
    assert ("topic", "deliver.") not in reads[principals.GATEWAY]
    assert ("topic", "provider.") not in reads[principals.GATEWAY]
    assert reads[principals.SINK] == {("topic", "deliver."), ("group", "sink."),
                                      ("topic", "bus.contracts"),
                                      ("topic", "bus.audit")}  # its chain's head
    writes = {(g.resource_type, g.resource) for g in grants[principals.SINK]
              if g.operation == "Write"}
    # a dead letter, the file sink's deletions; never a delivery, a provider or a state topic
    assert writes == {("topic", "bus.dlq"), ("topic", "bus.audit")}
    assert principals.ADMIN not in grants  # a super user: it needs no grant


def test_the_gateway_reads_the_token_hashes_and_no_party_does() -> None:
    grants = by_principal(entitlements(CATALOG, [_contract()], datetime(2026, 6, 1, tzinfo=UTC)))
    readers = {name for name, found in grants.items()
               if any(g.resource == "bus.tokens" and g.operation == "Read" for g in found)}
    assert readers == {principals.GATEWAY}


@pytest.mark.parametrize("grant", sorted(entitlements(CATALOG, [_contract()],
                                                      datetime(2026, 6, 1, tzinfo=UTC))))
def test_every_grant_survives_the_broker_s_form(grant: Grant) -> None:
    assert as_grant(as_binding(grant)) == grant


def test_only_the_workers_write_the_signed_checkpoints() -> None:
    """A checkpoint vouches for a chain's head: whoever else could write one could vouch for a
    trail of its own making (the signature still needs the workers' key)."""
    grants = entitlements(Catalog.load(), [_contract()])
    writers = {g.principal for g in grants
               if g.resource == "bus.audit.checkpoints" and g.operation == "Write"}
    assert writers == {f"User:{principals.WORKER}"}
    assert not [g for g in grants if g.resource == "bus.audit.checkpoints"
                and g.principal != f"User:{principals.WORKER}"]


def test_the_gateway_reads_the_audit_trail_for_the_journal_and_never_writes_it() -> None:
    grants = by_principal(entitlements(CATALOG, []))[principals.GATEWAY]
    on_audit = {g.operation for g in grants if g.resource == "bus.audit"}
    assert on_audit == {"Read"}  # the journal's view; an audit record is the workers' and sinks'
