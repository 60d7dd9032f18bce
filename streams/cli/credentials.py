"""``circulation credentials create | rotate | list``: one credential per principal.

The operator (``bus-admin``) runs them. ``create`` and ``rotate`` print one JSON object
``{"principal", "username", "password"}`` on standard output, once (with ``--token``, the
party's bearer token for the HTTP gateway instead: ``{"principal", "token"}``, only its hash
kept, on ``bus.tokens``): the password is set as the principal's SCRAM credential on the
broker and, where the registry authenticates, as its client secret at the identity server, and
is kept nowhere. Hand it to the party over a channel fit for a secret, then let it go.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from schemas.catalog import Catalog
from schemas.registry import RegistryError
from streams.cli.console import console, fail, settings
from streams.kafka import clients
from streams.security import principals
from streams.security.credentials import Credential, CredentialError, Credentials
from streams.security.identity import IdentityAdmin, IdentityError
from streams.security.principals import Principal, UnknownPrincipal
from streams.security.tokens import TokenError, issue_token
from streams.settings import Settings

app = typer.Typer(help="Credentials of providers, subscribers and the bus's components.",
                  no_args_is_help=True)

T = TypeVar("T")
PrincipalName = Annotated[str, typer.Argument(
    help="provider.<provider>, subscriber.<subscriber>, bus-worker, bus-gateway, bus-sink or "
         "bus-admin.", show_default=False)]


def _credentials(current: Settings) -> Credentials:
    """The broker's and, when the settings name an identity server, the registry's side."""
    accounts = IdentityAdmin.from_settings(current) if current.identity_url else None
    return Credentials(clients.cluster_admin(current), accounts)


def _run(action: Callable[[Credentials], T]) -> T:
    current = settings()
    try:
        return action(_credentials(current))
    except (CredentialError, IdentityError) as exc:
        fail(str(exc))


def _principal(name: str) -> Principal:
    """The principal called ``name``; a provider must be one of the catalog's (a subscriber
    may be given its credential before its first contract is applied)."""
    try:
        who = Principal.parse(name)
    except UnknownPrincipal as exc:
        fail(f"PRINCIPAL: {exc}")
    if who.name == principals.ADMIN:
        fail("PRINCIPAL: bus-admin's credential is set where the bus is deployed (the local "
             "stack's run folder, the cluster's KafkaUser Secret), not by this command: the "
             "broker itself authenticates with it")
    providers = [principals.provider(p).name for p in Catalog.load().providers()]
    if who.kind == "provider" and who.name not in providers:
        fail(f"PRINCIPAL: no such provider in the catalog; its providers' principals are "
             f"{', '.join(providers)}")
    return who


def _print_once(credential: Credential) -> None:
    typer.echo(json.dumps(credential.as_json()))


@app.command()
def create(
    principal: PrincipalName,
    token: Annotated[bool, typer.Option(
        "--token", help="Make the party's bearer token for the HTTP gateway instead, and "
                        "print {principal, token} once; a new token replaces the last.")] = False,
) -> None:
    """Make a principal's credential and print it once, as JSON."""
    who = _principal(principal)
    if token:
        _print_token_once(who)
        return
    _print_once(_run(lambda store: store.create(who)))


def _print_token_once(who: Principal) -> None:
    """Only the token's hash is written (to bus.tokens); the token goes to stdout alone."""
    try:
        made = asyncio.run(issue_token(settings(), who))
    except (TokenError, RegistryError) as exc:
        fail(str(exc))
    typer.echo(json.dumps({"principal": who.name, "token": made}))


@app.command()
def rotate(principal: PrincipalName) -> None:
    """Replace a principal's password (the old one stops working) and print it once."""
    who = _principal(principal)
    _print_once(_run(lambda store: store.rotate(who)))


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
) -> None:
    """Principals holding a credential, where they hold it; never a secret."""
    holders = _run(lambda store: store.holders())
    if as_json:
        typer.echo(json.dumps([{"principal": h.principal, "kafka": list(h.kafka),
                                "registry": h.registry} for h in holders]))
        return
    table = Table(title="credentials")
    for column in ("principal", "kafka (SCRAM)", "registry"):
        table.add_column(column)
    for holder in holders:
        registry = "-" if holder.registry is None else ("yes" if holder.registry else "no")
        table.add_row(holder.principal, ", ".join(holder.kafka) or "none", registry)
    console.print(table)
