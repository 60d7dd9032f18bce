"""``circulation worker``: run one routing worker process (run several to scale out)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from schemas.catalog import Catalog
from streams.audit.checkpoints import signing_key
from streams.cli.console import fail, settings
from streams.ops import metrics
from streams.privacy.pseudonyms import Pseudonymiser
from streams.privacy.secret import SecretRefused, pseudonym_secret
from streams.worker.app import WorkerProcess, create_app, prepare_topics


def worker(
    loglevel: Annotated[str, typer.Option(help="Faust's own log level.")] = "warning",
) -> None:
    """Route every provider topic under the applied contracts, until interrupted."""
    config = settings()
    try:  # refused before anything touches the broker
        pseudonyms = Pseudonymiser(pseudonym_secret(config))
        signer = signing_key(config)
    except SecretRefused as exc:
        fail(str(exc))
    catalog = Catalog.load()
    asyncio.run(prepare_topics(config, catalog))
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = create_app(config, catalog, exit_on_failure=True, pseudonymiser=pseudonyms,
                     signer=signer)
    if config.metrics_port is not None:
        metrics.serve(config.metrics_port, metrics.REGISTRY, config.metrics_bind)
    WorkerProcess(app, loglevel).execute_from_commandline()
