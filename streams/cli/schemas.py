"""``circulation schemas check | register``: the catalog's compatibility gate and registration."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from aiokafka.errors import KafkaError
from rich.table import Table

from schemas.catalog import Catalog
from schemas.compatibility import check_catalog
from schemas.registry import RegistryError
from streams.cli.console import console, errors, fail, settings
from streams.kafka.admin import TopicError
from streams.kafka.provisioning import provision_catalog
from streams.settings import Settings

app = typer.Typer(help="The event catalog: check compatibility, register in the registry.",
                  no_args_is_help=True)


@app.command()
def check() -> None:
    """Prove every dataset version reads every older one (BACKWARD_TRANSITIVE), offline."""
    catalog = Catalog.load()
    problems = check_catalog(catalog)
    for problem in problems:
        errors.print(f"[red]incompatible:[/] {problem}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    versions = sum(len(d.versions) for d in catalog.datasets())
    console.print(f"[green]compatible[/]: {len(catalog.datasets())} datasets, {versions} "
                  f"versions, {len(catalog.bus_records())} bus records (BACKWARD_TRANSITIVE)")


@app.command()
def register(
    url: Annotated[str | None, typer.Option(help="Registry URL (default: settings).")] = None,
) -> None:
    """Register every schema under ``<topic>-value``, set BACKWARD_TRANSITIVE, and create the
    bus's and the providers' topics; idempotent. An operator's step (``bus-admin``)."""
    current = settings()
    if url is not None:
        current = current.model_copy(update={"schema_registry_url": url})
    try:
        console.print(prepare_catalog(current))
    except (RegistryError, TopicError) as exc:
        fail(str(exc))
    except KafkaError as exc:
        fail(f"Kafka at {current.kafka_bootstrap}: {exc!r}")


def prepare_catalog(current: Settings) -> Table:
    """Provision the catalog (:func:`~streams.kafka.provisioning.provision_catalog`); the
    table of what the registry holds."""
    done = asyncio.run(provision_catalog(current, Catalog.load()))
    created = len(done.created_topics)
    table = Table(title="registered schemas",
                  caption=f"{created} topic{'s' * (created != 1)} created")
    for column in ("subject", "versions", "schema ids"):
        table.add_column(column, overflow="fold")
    for subject, versions in done.subjects.items():
        table.add_row(subject, ", ".join(f"v{r.version}" for r in versions),
                      ", ".join(str(r.schema_id) for r in versions))
    return table
