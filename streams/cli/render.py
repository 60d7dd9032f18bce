"""``circulation render k8s``: the bus's Kubernetes manifests, from the catalog and contracts.

By default the contracts are those recorded on ``bus.contracts`` (revoked ones included: their
topics stay, and their subscribers may read erasure notices until the retention has passed),
read as ``contracts list`` reads them; ``--contracts-from DIR`` takes contract files instead,
validated as ``contracts validate`` does, so a pipeline renders without reaching the bus.
The users' ACLs are the grants due now: render again, as ``acl sync`` runs again, once a
revoked contract's retention has passed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from schemas.catalog import Catalog
from streams.cli.console import console, fail, settings
from streams.cli.contracts import validated, with_store
from streams.kubernetes.manifests import ManifestFile, NotOurs, render, write
from streams.kubernetes.options import BadOptions, RenderOptions
from streams.state.contract import Contract

app = typer.Typer(help="Render deployment manifests from the catalog and the contracts.",
                  no_args_is_help=True)
_FROM_KAFKA = "kafka"
_DEFAULTS = RenderOptions(image="")


def _contracts(source: str) -> list[Contract]:
    """The recorded contracts (``kafka``), or those of the files in folder ``source``."""
    if source == _FROM_KAFKA:
        return list(with_store(lambda store: store.load()).values())
    return validated([Path(source)])


def _summary(files: list[ManifestFile], out: Path) -> Table:
    table = Table(title=f"manifests written to {out}")
    for column in ("file", "kind", "resources"):
        table.add_column(column, overflow="fold")
    for manifest in files:
        names = [r["metadata"]["name"] for r in manifest.resources]
        shown = ", ".join(names) if len(names) <= 3 else f"{len(names)} ({names[0]}, …)"
        table.add_row(manifest.name, manifest.kind, shown)
    return table


@app.command()
def k8s(
    out: Annotated[Path, typer.Option(
        help="Folder to write into; only the files rendering wrote before are replaced.")],
    namespace: Annotated[str, typer.Option(help="Namespace of every resource.")
                         ] = _DEFAULTS.namespace,
    image: Annotated[str | None, typer.Option(
        help="The bus's container image (default circulation:<this version>).")] = None,
    contracts_from: Annotated[str, typer.Option(
        metavar="kafka|DIR", help="Read the contracts recorded on the bus, or the contract "
        "files of a folder (offline).")] = _FROM_KAFKA,
    cluster: Annotated[str, typer.Option(help="Name of the Kafka cluster.")
                       ] = _DEFAULTS.cluster,
    partitions: Annotated[int | None, typer.Option(
        min=1, help="Partitions per topic (default CIRCULATION_TOPIC_PARTITIONS).")] = None,
    replicas: Annotated[int, typer.Option(
        min=1, help="Brokers, and the replication factor of every topic.")
                        ] = _DEFAULTS.replicas,
    min_insync_replicas: Annotated[int, typer.Option(
        min=1, help="min.insync.replicas of every topic.")] = _DEFAULTS.min_insync_replicas,
    storage: Annotated[str, typer.Option(help="Volume size of each broker.")
                       ] = _DEFAULTS.storage,
    registry_url: Annotated[str, typer.Option(
        help="The schema registry's Confluent-compatible API, as the pods reach it.")
                            ] = _DEFAULTS.registry_url,
    pseudonym_secret: Annotated[str, typer.Option(
        help="Name of the Secret (key: secret) holding the pseudonym secret.")
                                ] = _DEFAULTS.pseudonym_secret_name,
    lag_threshold: Annotated[int, typer.Option(
        min=1, help="Router lag (records) per worker before KEDA adds one.")
                             ] = _DEFAULTS.lag_threshold,
) -> None:
    """Strimzi, KEDA and Prometheus-operator manifests: cluster, topics, users with the ACLs
    of the contracts, workers scaled on their lag, the lag exporter."""
    config = settings()
    try:
        options = RenderOptions(
            image=image or f"circulation:{version('circulation')}", namespace=namespace,
            cluster=cluster, partitions=partitions or config.topic_partitions,
            replicas=replicas, min_insync_replicas=min_insync_replicas, storage=storage,
            registry_url=registry_url, pseudonym_secret_name=pseudonym_secret,
            lag_threshold=lag_threshold)
        files = render(Catalog.load(), _contracts(contracts_from), options,
                       datetime.now(UTC))
        write(files, out)
    except (BadOptions, NotOurs) as exc:
        fail(str(exc))
    console.print(_summary(files, out))
