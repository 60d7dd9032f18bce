"""The gateway's FastAPI application: its routes, its refusals and what it holds while it runs.

It holds one Kafka producer (through the provider's :class:`~connectors.publisher.Publisher`,
as ``bus-gateway``), one registry client and the token directory, made once at start-up and
shared by every request; it answers nothing before the directory has read every token, so a
replica that just started does not refuse a valid token.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response

from connectors.gateway import citizen, events, health, portal, problems
from connectors.gateway.request_body import BoundedBodies
from connectors.publisher import Publisher
from schemas.catalog import Catalog
from schemas.registry import SchemaRegistry
from schemas.serde import AvroSerde
from streams.journal.follower import JournalFollower
from streams.journal.view import JournalView
from streams.kafka import clients
from streams.privacy.secret import pseudonym_secret
from streams.security.tokens import TokenDirectory
from streams.settings import Settings

log = structlog.get_logger(__name__)

API_VERSION = "1"
"""The version of the API under ``/v1``; a change that breaks a caller gets ``/v2``."""


def create_app(settings: Settings, host: str = "127.0.0.1") -> FastAPI:
    """The gateway, connecting with ``settings`` when it starts, listening on ``host``;
    :class:`~connectors.gateway.citizen.SignInRefused` when the development sign-in is asked
    for where it must not run."""
    citizen.check_sign_in(settings, host)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        catalog = Catalog.load()
        pseudonym_secret(settings)  # enrolments answer pseudonyms: refuse to start without it
        registry = clients.schema_registry(settings)
        tokens = TokenDirectory(settings, AvroSerde(registry))
        await tokens.start()
        try:
            async with Publisher(settings, catalog, registry) as publisher:
                app.state.settings = settings
                app.state.catalog = catalog
                app.state.registry = registry
                app.state.tokens = tokens
                app.state.publisher = publisher
                app.state.ingestion = events.ingestion(settings, publisher)
                app.state.sessions = citizen.Sessions()
                async with _journal(settings, catalog, registry) as follower:
                    app.state.journal = follower
                    yield
        finally:
            await tokens.stop()
            registry.close()

    app = FastAPI(
        title="Circulation gateway",
        summary="Publish change events, manage a contract's population and consents.",
        version=API_VERSION, lifespan=lifespan,
        docs_url=None, redoc_url=None,  # their pages load scripts from a CDN: none here
    )
    problems.install(app)
    app.add_exception_handler(citizen.JournalUnavailable, citizen.unavailable)
    app.add_middleware(BoundedBodies, limit=settings.gateway_max_body_bytes)
    app.middleware("http")(_log_request)  # outermost: every answer is logged, 413s included
    app.include_router(health.router)
    app.include_router(events.router)
    app.include_router(portal.router)
    app.include_router(citizen.router)
    return app


@asynccontextmanager
async def _journal(settings: Settings, catalog: Catalog,
                   registry: SchemaRegistry) -> AsyncIterator[JournalFollower | None]:
    """The journal's view, followed while the gateway runs, when CIRCULATION_JOURNAL_DIR says
    where it lives (None otherwise: the journal's routes then answer 503)."""
    if settings.journal_dir is None:
        yield None
        return
    view = JournalView(settings.journal_dir)
    follower = JournalFollower(settings, AvroSerde(registry), catalog, view)
    try:
        await follower.start()
        yield follower
    finally:
        await follower.stop()
        view.close()


async def _log_request(request: Request,
                       call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """One log line per request, naming its route's template rather than its path: a path or
    a query may hold whatever a careless caller put there. Never a header: one is the token."""
    started = time.perf_counter()
    try:
        response = await call_next(request)
    except Exception as exc:  # answered here: past this point uvicorn would log its message
        response = problems.crashed(request, exc)
    route = request.scope.get("route")
    log.info("request", method=request.method, route=getattr(route, "path", None),
             status=response.status_code,
             duration_ms=round((time.perf_counter() - started) * 1000, 1))
    return response


def openapi_document() -> dict[str, object]:
    """The OpenAPI document, without starting anything (what is committed and tested)."""
    return create_app(Settings()).openapi()


def openapi_json() -> str:
    """The OpenAPI document as committed in ``docs/openapi.json``: indented, keys in order."""
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"
