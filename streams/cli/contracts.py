"""``circulation contracts validate | apply | list | show | revoke``: contracts for operators.

``validate`` never touches Kafka, so it can run in a merge-request pipeline on the contract
files; ``apply`` validates the same way and changes nothing unless every file is valid.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
import yaml
from aiokafka.errors import KafkaError
from rich.table import Table

from schemas.catalog import Catalog
from schemas.registry import RegistryError
from streams.cli.console import console, errors, fail, settings
from streams.kafka import clients
from streams.kafka.admin import TopicError
from streams.state.contract import Contract
from streams.state.contract_files import ContractProblem, validate_paths
from streams.state.contract_store import (
    Applied,
    ContractNotFound,
    ContractStore,
    ContractStoreError,
)

app = typer.Typer(help="Contracts: who receives which fields, for what purpose, how long.",
                  no_args_is_help=True)

T = TypeVar("T")
Paths = Annotated[list[Path], typer.Argument(help="Contract files, or folders of *.yaml files.")]
_DAY_FORMATS = ["%Y-%m-%d"]


def _today() -> date:
    return datetime.now(UTC).date()


def with_store(operation: Callable[[ContractStore], Coroutine[Any, Any, T]]) -> T:
    """Run ``operation`` against the configured cluster and registry; fail cleanly on errors."""
    current = settings()
    try:
        with clients.schema_registry(current) as registry:
            store = ContractStore(current, registry, Catalog.load())
            return asyncio.run(operation(store))
    except ContractNotFound as exc:
        fail(str(exc.args[0]))
    except (ContractStoreError, RegistryError, TopicError) as exc:
        fail(str(exc))
    except KafkaError as exc:
        fail(f"Kafka at {current.kafka_bootstrap}: {exc!r}")


def _report(problems: list[ContractProblem]) -> None:
    """Every problem on stderr, one per line, then how many."""
    for problem in problems:
        errors.print(str(problem), markup=False, highlight=False, soft_wrap=True)
    files = len({p.file for p in problems})
    errors.print(f"[bold red]{len(problems)} problem{'s' * (len(problems) > 1)}[/] in "
                 f"{files} file{'s' * (files > 1)}", highlight=False)


def validated(paths: list[Path]) -> list[Contract]:
    """The contracts under ``paths``, or exit 1 after listing every problem."""
    contracts, problems = validate_paths(paths, Catalog.load())
    if problems:
        _report(problems)
        raise typer.Exit(1)
    return contracts


def _datasets(contract: Contract) -> str:
    """Dataset ids, one a line (``show`` gives their fields)."""
    return "\n".join(contract.datasets)


def _window(contract: Contract) -> str:
    return f"{contract.valid_from} → {contract.valid_until or '…'}"


def _contracts_table(title: str, contracts: list[Contract], on: date | None = None) -> Table:
    table = Table(title=title)
    columns = ["contract", "subscriber", "datasets", "consent", "population", "retention",
               "valid"] + (["state"] if on else [])
    for column in columns:
        table.add_column(column, overflow="fold")
    for c in contracts:
        row = [c.id, c.subscriber, _datasets(c), c.consent, c.population, c.retention,
               _window(c)]
        if on:
            state = c.state(on)
            row.append(f"[green]{state}[/]" if state == "active" else f"[yellow]{state}[/]")
        table.add_row(*row)
    return table


@app.command()
def validate(paths: Paths) -> None:
    """Check contract files against the catalog, offline; list every problem (exit 1 if any)."""
    contracts = validated(paths)
    for c in contracts:
        fields = "; ".join(f"{name}: {', '.join(f)}" for name, f in c.datasets.items())
        console.print(f"[green]valid[/] {c.id} → {c.delivery_topic} ({fields})",
                      highlight=False, soft_wrap=True)
    console.print(f"{len(contracts)} valid contract{'s' * (len(contracts) != 1)}")


def _applied_table(done: list[Applied]) -> Table:
    table = Table(title="applied contracts")
    for column in ("contract", "outcome", "delivery topic", "retention.ms", "segment.ms",
                   "schema subject", "schema id"):
        table.add_column(column, overflow="fold")
    for applied in done:
        contract, config = applied.contract, applied.contract.topic_config()
        topic = contract.delivery_topic + (" (created)" if applied.topic_created else "")
        table.add_row(contract.id, applied.outcome, topic, config["retention.ms"],
                      config["segment.ms"], contract.delivery_subject, str(applied.schema_id))
    return table


@app.command()
def apply(paths: Paths) -> None:
    """Validate, then record each contract and prepare its delivery topic and schema.

    Idempotent: applying the same files again changes nothing.
    """
    contracts = validated(paths)
    done = with_store(lambda store: store.apply(contracts))
    console.print(_applied_table(done))


@app.command("list")
def list_contracts(
    on: Annotated[datetime | None, typer.Option(formats=_DAY_FORMATS,
                                                help="Day the state is given for "
                                                     "(default: today, UTC).")] = None,
    active: Annotated[bool, typer.Option("--active", help="Only contracts in force.")] = False,
) -> None:
    """Every recorded contract, with its state: active, pending, expired or revoked."""
    day = on.date() if on else _today()
    contracts = sorted(with_store(lambda store: store.load()).values(), key=lambda c: c.id)
    if active:
        contracts = [c for c in contracts if c.is_active(day)]
    console.print(_contracts_table(f"contracts on {day}", contracts, on=day))


@app.command()
def show(
    contract_id: Annotated[str, typer.Argument(metavar="ID", help="Contract id.")],
    output: Annotated[Literal["yaml", "json"], typer.Option(
        "--format", "-f", help="yaml (the contract file's format) or json.")] = "yaml",
) -> None:
    """Print one recorded contract as YAML (like its file) or JSON."""
    contract = with_store(lambda store: store.get(contract_id))
    data = contract.to_file()
    if output == "json":
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
        return
    typer.echo(f"# {contract.id}: {contract.state(_today())} on {_today()}")
    typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100).rstrip())


@app.command()
def revoke(
    contract_id: Annotated[str, typer.Argument(metavar="ID", help="Contract id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Revoke a contract: nothing more is delivered under it. Irreversible."""
    if not yes:
        typer.confirm(f"Revoke contract {contract_id}? Nothing more will be delivered under it, "
                      f"and it cannot be re-applied", abort=True)

    async def revoking(store: ContractStore) -> tuple[Contract, Contract]:
        before = await store.get(contract_id)
        return before, await store.revoke(contract_id)

    before, after = with_store(revoking)
    if before.revoked:
        console.print(f"{contract_id} was already revoked at {after.revoked_at}",
                      highlight=False)
    else:
        console.print(f"[green]revoked[/] {contract_id} at {after.revoked_at}", highlight=False)
