"""Shared terminal output for commands: one rich console, one way to fail."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from streams.logs import configure_logging
from streams.settings import Settings, get_settings

console = Console()
errors = Console(stderr=True)


def settings() -> Settings:
    """The process settings, with logging configured on first use."""
    current = get_settings()
    configure_logging(current)
    return current


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` as an error on stderr and exit with ``code``."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
