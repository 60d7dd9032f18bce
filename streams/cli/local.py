"""``circulation local up | down | status | logs``: the real stack on this machine."""

from __future__ import annotations

import asyncio
import shlex
import time
from typing import Annotated

import typer
from rich.table import Table

from streams.cli.console import console, fail, settings
from streams.dev.localstack import ComponentStatus, LocalStack, StackError, start_showing
from streams.dev.settings import LocalStackSettings

app = typer.Typer(help="Run a real Kafka broker and schema registry locally (no Docker needed).",
                  no_args_is_help=True)

_STATE_STYLE = {"running": "green", "unhealthy": "yellow", "stopped": "dim", "foreign": "red"}
_STATE_TEXT = {
    "running": "running",
    "unhealthy": "started, not answering",
    "stopped": "stopped",
    "foreign": "port taken by another process",
}


def _show(statuses: list[ComponentStatus]) -> None:
    table = Table(title="Circulation local stack")
    for column in ("component", "state", "address", "pid", "log"):
        table.add_column(column, overflow="fold")
    for status in statuses:
        style = _STATE_STYLE[status.state]
        table.add_row(status.name, f"[{style}]{_STATE_TEXT[status.state]}[/]", status.address,
                      str(status.pid or "-"), status.log_file)
    console.print(table)


def _stack(secure: bool | None = None) -> LocalStack:
    """The local stack as the environment sets it up (logging configured first)."""
    settings()
    return LocalStack(LocalStackSettings(), secure)


@app.command()
def up(
    fresh: Annotated[bool, typer.Option(
        help="Wipe the broker's topics and the registry's schemas before starting.")] = False,
    secure: Annotated[bool, typer.Option(
        "--secure", help="SASL_SSL only (SCRAM-SHA-512), ACLs enforced, registry behind an "
        "identity server; `circulation local env` then gives a shell its operator.")] = False,
) -> None:
    """Start Kafka (KRaft) and the schema registry, and wait until both answer."""
    stack = _stack(secure)
    began = time.monotonic()
    try:
        statuses = start_showing(stack, console, fresh=fresh)
        if secure:
            _prepare_secure(stack)
    except StackError as exc:
        fail(str(exc))
    _show(statuses)
    if secure:
        console.print(f"ready in {time.monotonic() - began:.1f}s — SASL_SSL on "
                      f"{stack.kafka.address}; `eval \"$(circulation local env)\"` gives a "
                      "shell the operator's credential")
    else:
        console.print(f"ready in {time.monotonic() - began:.1f}s — "
                      f"CIRCULATION_KAFKA_BOOTSTRAP={stack.kafka.address} "
                      f"CIRCULATION_SCHEMA_REGISTRY_URL={stack.registry.address}")


def _prepare_secure(stack: LocalStack) -> None:
    """Provision the secure stack as its operator (:meth:`LocalStack.provision`)."""
    plan = asyncio.run(stack.provision())
    console.print(f"topics and schemas ready; ACLs: {plan.summary()}")


@app.command()
def env() -> None:
    """Print the `export CIRCULATION_…=…` lines giving a shell the running stack's operator
    (`eval "$(circulation local env)"`); a plain stack's lines unset the secure ones."""
    stack = _stack()
    if not all(status.running for status in stack.status()):
        fail("the local stack is not running: start it with `circulation local up --secure`")
    for name, value in stack.environment().items():
        print(f"export {name}={shlex.quote(value)}" if value else f"unset {name}")


@app.command()
def down() -> None:
    """Stop the broker and registry that ``up`` started, and nothing else."""
    stopped = _stack().down(progress=console.print)
    if not stopped:
        console.print("nothing was running")


@app.command()
def status() -> None:
    """Show each component's state; exit 1 unless every one is running and answering."""
    statuses = _stack().status()
    _show(statuses)
    if not all(s.running for s in statuses):
        raise typer.Exit(1)


@app.command()
def logs(
    component: Annotated[str, typer.Argument(
        help="kafka, registry or identity (secure stack)")] = "kafka",
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many last lines.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
) -> None:
    """Print the end of a component's log."""
    try:
        process = _stack().component_process(component)
    except StackError as exc:
        fail(str(exc))
    if not process.log_file.exists():
        fail(f"{component} has no log yet at {process.log_file}")
    print(process.log_tail(lines))
    if follow:
        _follow(process.log_file)


def _follow(path: object) -> None:
    from pathlib import Path

    with Path(str(path)).open(encoding="utf-8", errors="replace") as log:
        log.seek(0, 2)
        try:
            while True:
                line = log.readline()
                if line:
                    print(line, end="")
                else:
                    time.sleep(0.3)
        except KeyboardInterrupt:
            return
