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
        assert (grant.resource_type, grant.pattern, grant.operation) == (
            "topic", "prefix", "Write")
        covered = {t for t in catalog.provider_topics() if t.startswith(grant.resource)}
        assert covered == {catalog.topic_for(provider, d.id) for d in catalog.datasets()
                           if provider in d.providers}, "another provider's topic, or not all"
