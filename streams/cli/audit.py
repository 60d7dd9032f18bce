"""``circulation audit verify | public-key | export-checkpoints``: prove the audit chains."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from streams.audit.checkpoint_log import (
    log_starts,
    prove_heads,
    read_checkpoints,
    retention_ms,
)
from streams.audit.checkpoints import (
    Checkpoint,
    CheckpointReport,
    public_key_pem,
    read_public_key,
    signing_key,
)
from streams.audit.trail import Verification, read_trail
from streams.cli.console import console, errors, fail, settings
from streams.privacy.secret import SecretRefused
from streams.settings import Settings

app = typer.Typer(help="The audit trail of every routing decision.", no_args_is_help=True)


@app.command()
def verify(
    checkpoints_file: Annotated[Path | None, typer.Option(
        "--checkpoints", metavar="FILE", help="Checkpoints kept outside Kafka (from "
        "export-checkpoints) instead of those on bus.audit.checkpoints.")] = None,
    public_key_file: Annotated[Path | None, typer.Option(
        "--public-key", metavar="FILE", help="The PEM public key that verifies them (from "
        "audit public-key); by default derived from the signing key setting.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Recompute every hash of every chain and hold the trail against the signed checkpoints:
    exit 1 on any changed, removed, inserted or reordered record, any truncated or rewritten
    tail, any checkpoint whose signature does not hold."""
    config = settings()
    public = _public_key(config, public_key_file)
    given = _checkpoints_from(checkpoints_file) if checkpoints_file is not None else None

    async def run() -> tuple[Verification, CheckpointReport]:
        # The checkpoints first: each is written once its heads are acknowledged, so every one
        # read before the trail names records the trail then holds, however busy the workers.
        signed = given if given is not None else await read_checkpoints(config)
        found, chains = await read_trail(config)
        starts = await log_starts(config)
        retained = await retention_ms(config)
        return found, prove_heads(chains, starts, signed, public, retained)

    found, proof = asyncio.run(run())
    broken = bool(found.breaks or proof.problems)
    if as_json:
        typer.echo(json.dumps(_report_json(found, proof, broken)))
    else:
        _print_report(found, proof)
    if broken:
        raise typer.Exit(1)


def _public_key(config: Settings, path: Path | None) -> Ed25519PublicKey:
    if path is None:
        try:
            return signing_key(config).public_key()
        except SecretRefused as exc:
            fail(f"{exc}; or give the verifying key with --public-key FILE")
    try:
        return read_public_key(path.read_bytes())
    except OSError as exc:
        fail(f"--public-key: {path}: {exc.strerror}")
    except ValueError:
        fail(f"--public-key: {path} is not an Ed25519 public key in PEM")


def _checkpoints_from(path: Path) -> list[Checkpoint]:
    """The checkpoints of an exported file; a line that is none is refused by its number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--checkpoints: {path} cannot be read ({type(exc).__name__})")
    found = []
    for number, line in enumerate(lines, start=1):
        try:
            found.append(Checkpoint.from_record(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            fail(f"--checkpoints: {path}, line {number}: not a checkpoint as "
                 "export-checkpoints writes them")
    return found


def _report_json(found: Verification, proof: CheckpointReport, broken: bool) -> dict[str, Any]:
    return {"status": "BROKEN" if broken else "OK", "chains": found.chains,
            "records": found.records, "breaks": [str(b) for b in found.breaks],
            "checkpoints": {"checked": proof.checkpoints,
                            "beyond_retention": proof.beyond_retention,
                            "problems": [str(p) for p in proof.problems],
                            "uncovered": {str(p): n for p, n in sorted(proof.uncovered.items())}}}


def _print_report(found: Verification, proof: CheckpointReport) -> None:
    for problem in [*map(str, found.breaks), *map(str, proof.problems)][:50]:
        errors.print(f"[red]broken:[/] {problem}", highlight=False, soft_wrap=True)
    if found.breaks or proof.problems:
        errors.print(f"{len(found.breaks)} break(s) in {found.records} audit records, "
                     f"{len(proof.problems)} checkpoint problem(s) in {proof.checkpoints}")
        return
    uncovered = sum(proof.uncovered.values())
    console.print(f"[green]intact[/]: {found.records} audit records in {found.chains} chains; "
                  f"{proof.checkpoints} signed checkpoint(s) hold; {uncovered} newest "
                  "record(s) not covered by a checkpoint yet", highlight=False)


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
