"""``circulation acl sync``: the broker's ACLs made equal to what the contracts entitle.

Derived by :func:`streams.security.access.entitlements` from the catalog and the contracts
applied on the bus, at the time of the run: a contract ended or revoked longer ago than its
retention entitles nothing any more, so a sync after that removes its subscriber's access. Run it
after ``contracts apply`` and ``contracts revoke``, and daily (retentions run out on their own).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from aiokafka.errors import KafkaError
from rich.table import Table

from schemas.registry import RegistryError
from streams.cli.console import console, fail, settings
from streams.security.acls import AclError, AclPlan, synchronise
from streams.state.contract_store import ContractStoreError

app = typer.Typer(help="Kafka ACLs derived from the catalog and the contracts.",
                  no_args_is_help=True)


@app.command()
def sync(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan and change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The plan as one JSON object.")] = False,
) -> None:
    """Add the ACLs the contracts entitle and remove every other one."""
    current = settings()
    try:
        plan = asyncio.run(synchronise(current, dry_run))
    except (AclError, ContractStoreError, RegistryError) as exc:
        fail(str(exc))
    except KafkaError as exc:
        fail(f"Kafka at {current.kafka_bootstrap}: {exc!r}")
    if as_json:
        typer.echo(json.dumps({"dry_run": dry_run, **plan.as_json()}))
    else:
        _show(plan, dry_run)


def _show(plan: AclPlan, dry_run: bool) -> None:
    table = Table(title="ACL plan" if dry_run else "ACLs synchronised")
    for column in ("change", "principal", "resource", "pattern", "operation"):
        table.add_column(column, overflow="fold")
    shown = plan.as_json()
    for verb, style in (("add", "green"), ("remove", "red")):
        for entry in shown[verb]:
            table.add_row(f"[{style}]{verb}[/]", entry["principal"],
                          f"{entry['resource_type']} {entry['resource']}", entry["pattern"],
                          entry["operation"])
    console.print(table)
    console.print(f"{len(plan.add)} to add, {plan.removed} to remove, "
                  f"{plan.kept} unchanged" + (" — dry run: nothing changed" if dry_run else ""))
