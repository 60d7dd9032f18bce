"""``circulation audit verify | public-key | export-checkpoints``: prove the audit chains."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from streams.audit.checkpoint_log import read_checkpoints
from streams.audit.checkpoints import public_key_pem, signing_key
from streams.audit.trail import verify_trail
from streams.cli.console import console, errors, fail, settings
from streams.privacy.secret import SecretRefused

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


@app.command("public-key")
def public_key() -> None:
    """Print the public half of the workers' checkpoint signing key (PEM): what a verifier
    outside the bus needs, and nothing it could sign with."""
    try:
        key = signing_key(settings())
    except SecretRefused as exc:
        fail(str(exc))
    typer.echo(public_key_pem(key.public_key()), nl=False)


@app.command("export-checkpoints")
def export_checkpoints(
    file: Annotated[Path, typer.Argument(help="Where to write them: one JSON object a line.")],
) -> None:
    """Write every signed checkpoint on the bus to FILE, for keeping outside Kafka: whoever
    can rewrite the trail cannot rewrite a copy kept elsewhere."""
    checkpoints = asyncio.run(read_checkpoints(settings()))
    lines = "".join(json.dumps(c.as_json(), sort_keys=True) + "\n" for c in checkpoints)
    try:
        file.write_text(lines, encoding="utf-8")
    except OSError as exc:
        fail(f"{file}: {exc.strerror}")
    console.print(f"{len(checkpoints)} checkpoint(s) written to {file}", highlight=False)
