"""Shared terminal output for commands: one rich console, one way to fail."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console

from streams.logs import configure_logging
from streams.privacy.secret import SecretRefused
from streams.settings import Settings, get_settings

console = Console()
errors = Console(stderr=True)


def settings() -> Settings:
    """The process settings, with logging configured on first use; settings that do not
    validate end the command in one line per problem, naming the variable, never its value."""
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


def secret(load: Callable[[Settings], SecretStr], config: Settings) -> SecretStr:
    """A secret this command needs, read before it does anything; a refusal ends it in one
    line naming the setting."""
    try:
        return load(config)
    except SecretRefused as exc:
        fail(str(exc))


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` as an error on stderr and exit with ``code``."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
