"""``circulation sink webhook CONTRACT`` and ``circulation sink files CONTRACT --dir D``: a
contract's deliveries POSTed to its subscriber's endpoint (:mod:`connectors.webhook`), or
written to one JSON-lines file per day (:mod:`connectors.files`), as the ``bus-sink``
principal."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from aiokafka.errors import KafkaError

from connectors.files.day_files import UnreadableDayFile
from connectors.files.sink import FileSink, SinkLocked
from connectors.webhook import metrics as webhook_metrics
from connectors.webhook.calls import EndpointGone
from connectors.webhook.endpoint import EndpointRefused
from connectors.webhook.signing import SecretError, Signer
from connectors.webhook.sink import run, webhook_of
from schemas.registry import RegistryError
from streams.audit.heads import AuditChainError
from streams.cli.console import fail, settings
from streams.ops import metrics
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.subjects import find_contract

GONE_EXIT = 3
"""Exit status once the endpoint answered 410 Gone: distinct, so a supervisor can tell a
disabled endpoint (do not restart blindly) from a crash."""

app = typer.Typer(help="Deliver contracts' topics to administrations that run no Kafka client.",
                  no_args_is_help=True)


@app.command()
def webhook(contract: Annotated[str, typer.Argument(help="Contract id.")]) -> None:
    """POST each delivery of CONTRACT to the webhook its contract names, signed (Standard
    Webhooks), until stopped (SIGTERM or SIGINT).

    The signing secret is read from the environment variable the contract names in
    delivery.webhook.secret_env (two space-separated secrets while rotating)."""
    config = settings()
    found = _recorded(config, contract)
    try:
        signer = signer_of(found)
    except (LookupError, SecretError) as exc:
        fail(str(exc))
    if config.metrics_port is not None:
        metrics.serve(config.metrics_port, webhook_metrics.REGISTRY, config.metrics_bind)
    try:
        asyncio.run(_until_signalled(lambda stop: run(config, found, signer, stop)))
    except EndpointRefused as exc:
        fail(str(exc))
    except EndpointGone as exc:
        fail(f"{exc}; the sink's group lag grows until it is started again", GONE_EXIT)
    except (KafkaError, RegistryError) as exc:
        fail(f"the sink stopped: {exc!r}")


@app.command()
def files(
    contract: Annotated[str, typer.Argument(help="Contract id.")],
    directory: Annotated[Path, typer.Option(
        "--dir", help="Folder of the files: D/<contract>/<YYYY-MM-DD>.jsonl.",
        file_okay=False)],
) -> None:
    """Write each delivery of CONTRACT to D/<contract>/<YYYY-MM-DD>.jsonl (the UTC day of its
    time), and delete each file whose deliveries have all expired, auditing the deletion,
    until stopped (SIGTERM or SIGINT)."""
    config = settings()
    found = _recorded(config, contract)
    try:
        asyncio.run(_until_signalled(lambda stop: FileSink(config, found, directory).run(stop)))
    except (SinkLocked, UnreadableDayFile) as exc:
        fail(str(exc))
    except OSError as exc:  # names the file, never a delivery
        fail(f"the files could not be written: {exc}")
    except (AuditChainError, RuntimeError) as exc:
        fail(f"the sink's audit chain could not be read: {exc}")
    except (KafkaError, RegistryError) as exc:
        fail(f"the sink stopped: {exc!r}")


def _recorded(config: Settings, contract_id: str) -> Contract:
    """The contract of that id as recorded on the bus; the command fails naming what is
    wrong otherwise."""
    try:
        return asyncio.run(find_contract(config, contract_id))
    except LookupError as exc:
        fail(str(exc))
    except (KafkaError, RegistryError) as exc:
        fail(f"the contract could not be read: {exc!r}")


def signer_of(contract: Contract) -> Signer:
    """The signer of the contract's webhook, from the variable it names."""
    variable = webhook_of(contract).secret_env
    secrets = os.environ.get(variable)
    if secrets is None:
        raise SecretError(f"{variable}: not set (it must hold the webhook's signing secret)")
    return Signer(secrets, variable)


async def _until_signalled(sink: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``sink`` until SIGTERM or SIGINT sets its stop event."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await sink(stop)
