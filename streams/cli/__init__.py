"""The ``circulation`` command line: the one face over streams, schemas and connectors."""

from __future__ import annotations

import typer

from streams.cli import (
    acl,
    api,
    asyncapi,
    audit,
    consume,
    contracts,
    credentials,
    demo,
    dlq,
    generate,
    ingest,
    journal,
    lag,
    local,
    publish,
    reconcile,
    render,
    retention,
    schemas,
    sink,
    subjects,
    worker,
)

app = typer.Typer(
    name="circulation",
    help="Circulation: purpose-bound circulation of change events between administrations.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(local.app, name="local")
app.add_typer(schemas.app, name="schemas")
app.add_typer(contracts.app, name="contracts")
app.add_typer(audit.app, name="audit")
app.add_typer(credentials.app, name="credentials")
app.add_typer(acl.app, name="acl")
app.add_typer(render.app, name="render")
app.add_typer(sink.app, name="sink")
app.add_typer(dlq.app, name="dlq")
app.add_typer(retention.app, name="retention")
app.add_typer(subjects.population_app, name="population")
app.add_typer(subjects.consent_app, name="consent")
app.command()(worker.worker)
app.command()(consume.consume)
app.command()(demo.demo)
app.command()(publish.publish)
app.command(name="ingest-file")(ingest.ingest_file)
app.command()(generate.generate)
app.command()(lag.lag)
app.command(name="reconcile")(reconcile.reconcile_command)
app.command()(asyncapi.asyncapi)
app.command()(api.api)
app.command(name="journal")(journal.journal_command)


def main() -> None:
    """Console-script entry point."""
    app()
