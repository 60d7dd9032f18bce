"""The ``circulation`` command line: the one face over streams, schemas and connectors."""

from __future__ import annotations

import typer

from streams.cli import local

app = typer.Typer(
    name="circulation",
    help="Circulation: purpose-bound circulation of change events between administrations.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(local.app, name="local")


def main() -> None:
    """Console-script entry point."""
    app()
