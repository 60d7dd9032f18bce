"""``circulation api``: the HTTP gateway (:mod:`connectors.gateway`), served by uvicorn.

It connects to Kafka and the registry with the process's settings, which in production are
``bus-gateway``'s credential. It listens on loopback unless told otherwise: in a cluster it
sits behind the ingress that terminates TLS.
"""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from connectors.gateway.app import create_app, openapi_json
from connectors.gateway.citizen import SignInRefused
from streams.cli.console import fail, settings


def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    openapi: Annotated[bool, typer.Option(
        "--openapi", help="Print the gateway's OpenAPI document (JSON) and exit.")] = False,
) -> None:
    """Serve the HTTP gateway: events from providers, population and consents from
    subscribers' portals, each caller authenticated by its bearer token."""
    if openapi:  # connects to nothing: the document is the code's
        typer.echo(openapi_json(), nl=False)
        return
    config = settings()
    try:
        app = create_app(config, host)
    except SignInRefused as exc:
        fail(str(exc))
    # uvicorn's access log would print each request's path and query as sent: a careless
    # caller may put anything there, a NIR included. Requests are logged by route instead.
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False,
                server_header=False, proxy_headers=False)
