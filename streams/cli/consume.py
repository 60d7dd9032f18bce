"""``circulation consume CONTRACT``: a subscriber's view of its deliveries, as CloudEvents JSON
lines (:mod:`connectors.deliveries`)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Annotated, Any

import typer
from aiokafka.errors import KafkaError

from connectors.deliveries import read_deliveries
from schemas.registry import RegistryError
from streams.cli.console import fail, settings
from streams.security import principals
from streams.security.principals import Principal, UnknownPrincipal
from streams.state.subjects import find_contract


def _print(event: Any) -> None:
    """One delivery, flushed at once: the group commits what was handed here, so a line still
    in the output buffer when the process dies would be a delivery the subscriber never gets."""
    sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def consume(
    contract: Annotated[str, typer.Argument(help="Contract id.")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning",
                                                 help="Read the whole topic.")] = False,
    max_events: Annotated[int | None, typer.Option("--max", min=1,
                                                   help="Stop after N deliveries.")] = None,
    timeout: Annotated[float, typer.Option(help="Stop after S seconds.")] = 10.0,
) -> None:
    """Print a contract's deliveries as CloudEvents JSON lines.

    A subscriber's credential (``subscriber.<id>``) reads its own contract's topic, named
    from the principal: it may read nothing else, not even the contracts. The operator's
    finds the contract's subscriber on the bus."""
    config = settings()
    try:
        subscriber = _subscriber_of(config.sasl_username)
        if subscriber is None:
            try:
                subscriber = asyncio.run(find_contract(config, contract)).subscriber
            except LookupError as exc:
                fail(str(exc))
        asyncio.run(read_deliveries(config, subscriber, contract, _print, from_beginning,
                                    max_events, timeout))
    except (KafkaError, RegistryError) as exc:
        fail(f"nothing more could be read: {exc!r}")
    except BrokenPipeError:  # the reader went away (``| head``): what it took is committed
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None


def _subscriber_of(username: str | None) -> str | None:
    """The subscriber a ``subscriber.<id>`` principal is; None for any other principal."""
    if username is None or not username.startswith(principals.SUBSCRIBER):
        return None
    try:
        return Principal.parse(username).party
    except UnknownPrincipal:
        return None
