"""``circulation asyncapi``: the AsyncAPI 3.0 document of the bus, or of one party's topics.

What a provider's or an administration's developer integrates from: generated from the catalog
and the contracts recorded on the bus (:mod:`connectors.asyncapi`), printed as JSON on stdout so
that it can be piped to a file or a code generator.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Annotated

import typer

from connectors.asyncapi import BusAddress, UnknownParty, document, entitling, scope
from schemas.catalog import Catalog
from streams.cli.console import fail, settings
from streams.cli.contracts import with_store


def asyncapi(
    subscriber: Annotated[str | None, typer.Option(
        "--subscriber", metavar="S", help="Only this administration's delivery topics.")] = None,
    provider: Annotated[str | None, typer.Option(
        "--provider", metavar="P", help="Only this provider's topics (catalog id, e.g. cnaf).")
    ] = None,
) -> None:
    """Print the AsyncAPI 3.0 document of the bus (every provider and subscriber), or of the
    provider and/or subscriber named: topics, Avro schemas, headers, security, erasure notices."""
    current = settings()
    catalog = Catalog.load()
    recorded = with_store(lambda store: store.load())
    contracts = entitling(recorded.values(), datetime.now(UTC))
    try:
        chosen = scope(catalog, contracts, provider=provider, subscriber=subscriber)
    except UnknownParty as exc:
        fail(str(exc), code=2)
    address = BusAddress(current.kafka_bootstrap, current.schema_registry_url,
                         current.security_protocol)
    found = document(catalog, contracts, chosen, address, version("circulation"))
    sys.stdout.write(json.dumps(found, ensure_ascii=False, indent=2) + "\n")
