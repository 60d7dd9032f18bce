"""Provider principals: named so that Kubernetes accepts them, granted the catalog's topics."""

from __future__ import annotations

from schemas.catalog import Catalog
from streams.security import principals
from streams.security.access import by_principal, entitlements


def test_every_catalog_provider_has_a_principal_writing_its_own_topics() -> None:
    catalog = Catalog.load()
    grants = by_principal(entitlements(catalog, []))
    for provider in catalog.providers():
        who = principals.provider(provider)
        assert "_" not in who.name
        (grant,) = grants[who.name]
        assert grant.resource == f"provider.{provider}."
        assert all(topic.startswith(grant.resource) == topic.startswith(f"provider.{provider}.")
                   for topic in catalog.provider_topics())
