"""``circulation audit verify``: prove the audit chains are intact."""

from __future__ import annotations

import asyncio

import typer

from streams.audit.trail import verify_trail
from streams.cli.console import console, errors, settings

app = typer.Typer(help="The audit trail of every routing decision.", no_args_is_help=True)


@app.command()
def verify() -> None:
    """Recompute every hash of every chain; exit 1 on any changed, removed or reordered record."""
    found = asyncio.run(verify_trail(settings()))
    for problem in found.breaks[:50]:
        errors.print(f"[red]broken:[/] {problem}", highlight=False, soft_wrap=True)
    if found.breaks:
        errors.print(f"{len(found.breaks)} break(s) in {found.records} audit records")
        raise typer.Exit(1)
    console.print(f"[green]intact[/]: {found.records} audit records in {found.chains} chains")
