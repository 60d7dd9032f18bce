"""``circulation retention report [--json]``: is every topic the bus owns configured as the
settings and the contracts require? ``circulation retention expire-history``: tombstone the
persons' ended choices past the audit retention (:mod:`streams.state.history_expiry`); run it
daily, as ``acl sync``.

``report``'s exit status: 0 when every key holds, 1 when any differs or a topic is missing, 2
when the cluster cannot be asked. ``--json`` prints one document, ``{"passes": bool,
"checks": [{topic, key, wanted, effective, status}, ...]}``, with ``status`` one of ``ok``,
``differs``, ``missing`` and ``effective`` null for a missing topic.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from aiokafka.errors import KafkaError
from rich.table import Table

from schemas.catalog import Catalog
from schemas.registry import RegistryError
from schemas.serde import AvroSerde
from streams.cli.console import console, fail, settings
from streams.kafka import clients
from streams.kafka.admin import TopicError
from streams.ops.retention_report import KeyCheck, check_topics, passes, wanted_topics
from streams.settings import Settings
from streams.state.contract_store import ContractStore, ContractStoreError
from streams.state.history_expiry import HistoryExpiry, expire_history

app = typer.Typer(help="Retention: what the bus keeps, and for how long.",
                  no_args_is_help=True)

_STYLE = {"ok": "green", "differs": "bold red", "missing": "bold red"}


@app.command()
def report(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON document.")] = False,
) -> None:
    """Each topic's configuration in force against what the settings and contracts require;
    exit 1 when any key differs or a topic is missing."""
    config = settings()
    try:
        checks = asyncio.run(_checks(config))
    except (KafkaError, TopicError, ContractStoreError, RegistryError) as exc:
        fail(f"the cluster at {config.kafka_bootstrap} could not be asked: "
             f"{_reason(exc)}", code=2)
    if as_json:
        document = {"passes": passes(checks), "checks": [c.as_json() for c in checks]}
        sys.stdout.write(json.dumps(document, sort_keys=True) + "\n")
    else:
        console.print(_table(checks))
    if not passes(checks):
        raise typer.Exit(1)


async def _checks(config: Settings) -> list[KeyCheck]:
    return await check_topics(config, await wanted_topics(config, Catalog.load()))


def _reason(exc: Exception) -> str:
    """The error's own message where the bus wrote it, the Kafka error's name otherwise (its
    repr may hold a whole request)."""
    return type(exc).__name__ if isinstance(exc, KafkaError) else str(exc)


def _table(checks: list[KeyCheck]) -> Table:
    """The differences first, then what holds, one row per key."""
    wrong = [c for c in checks if c.status != "ok"]
    table = Table(title=f"Topic configuration: {len(wrong)} of {len(checks)} keys differ")
    for column in ("topic", "key", "wanted", "in force", "status"):
        table.add_column(column)
    for check in [*wrong, *(c for c in checks if c.status == "ok")]:
        table.add_row(check.topic, check.key, check.wanted, check.effective or "—",
                      f"[{_STYLE[check.status]}]{check.status}[/]")
    return table


@app.command(name="expire-history")
def expire_history_command(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Count what would be tombstoned; write nothing.")] = False,
) -> None:
    """Tombstone withdrawn consents and removals older than the audit retention, so that
    compaction removes them (a standing opt_out objection is kept)."""
    config = settings()
    try:
        done = asyncio.run(_expire(config, dry_run))
    except (KafkaError, TopicError, ContractStoreError, RegistryError) as exc:
        fail(f"the cluster at {config.kafka_bootstrap} could not be asked: "
             f"{_reason(exc)}", code=2)
    verb = "would tombstone" if dry_run else "tombstoned"
    counts = {topic: sum(c.topic == topic for c in done.tombstoned)
              for topic in sorted({c.topic for c in done.tombstoned})}
    console.print(f"{verb} {len(done.tombstoned)} key(s)"
                  + "".join(f", {n} on {topic}" for topic, n in counts.items()), highlight=False)
    if done.deferred:
        console.print(f"{len(done.deferred)} partition(s) changed while read, left to the "
                      "next run", highlight=False)


async def _expire(config: Settings, dry_run: bool) -> HistoryExpiry:
    catalog = Catalog.load()
    with clients.schema_registry(config) as registry:
        contracts = await ContractStore(config, registry, catalog).load()
        return await expire_history(config, AvroSerde(registry), catalog, contracts,
                                    datetime.now(UTC) - config.audit_retention, dry_run)
