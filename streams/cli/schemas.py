"""``circulation schemas check | register``: the catalog's compatibility gate and registration."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from aiokafka.errors import KafkaError
from rich.table import Table

from schemas.catalog import Catalog
from schemas.compatibility import check_catalog
from schemas.registration import dataset_subjects, register_versions, value_subject
from schemas.registry import RegistryError
from streams.cli.console import console, errors, fail, settings
from streams.kafka import clients
from streams.kafka.admin import TopicError, ensure_topics
from streams.kafka.topics import BUS_RECORD_TOPICS, catalog_topics
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
    """What providers and workers need before they start: every topic of the catalog and
    every schema registered; the table of what the registry holds."""
    catalog = Catalog.load()
    created = asyncio.run(ensure_topics(current, catalog_topics(current, catalog)))
    subjects = list(dataset_subjects(catalog))
    subjects += [(value_subject(topic), catalog.bus_record(name).versions)
                 for name, topic in BUS_RECORD_TOPICS.items()]
    table = Table(title="registered schemas",
                  caption=f"{len(created)} topic{'s' * (len(created) != 1)} created")
    for column in ("subject", "versions", "schema ids"):
        table.add_column(column, overflow="fold")
    with clients.schema_registry(current) as registry:
        for subject, versions in subjects:
            done = register_versions(registry, subject, versions)
            table.add_row(subject, ", ".join(f"v{r.version}" for r in done),
                          ", ".join(str(r.schema_id) for r in done))
    return table
