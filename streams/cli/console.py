"""Shared terminal output for commands: one rich console, one way to fail."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from streams.logs import configure_logging
from streams.settings import Settings, get_settings

console = Console()
errors = Console(stderr=True)


def settings() -> Settings:
    """The process settings, with logging configured on first use; settings that do not
    validate end the command in one line naming each variable at fault, never its value."""
    try:
        current = get_settings()
    except ValidationError as exc:
        fail("; ".join(_problem(error) for error in exc.errors(include_input=False)))
    configure_logging(current)
    return current


def _problem(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"CIRCULATION_{where.upper()}: {message}" if where else message


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` as an error on stderr and exit with ``code``."""
    errors.print("error:", style="bold red", end=" ")
    errors.print(message, highlight=False, markup=False, soft_wrap=True)  # may name a file
    raise typer.Exit(code)
