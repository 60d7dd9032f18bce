"""Refusals as RFC 9457 problem documents: what is wrong, by field, never the value.

FastAPI's own validation errors repeat the caller's input (``input``, and for an unknown key
its name): in a request about a person that may be a NIR. Every refusal the gateway makes
goes through here instead, so none echoes what it was sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"


class FieldProblem(BaseModel):
    """One field at fault and why, never what it held."""

    field: str
    reason: str


class ProblemDocument(BaseModel):
    """An RFC 9457 problem document, with the fields at fault as ``errors``."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldProblem] = []


class Problem(Exception):
    """A refusal the gateway answers with; raise it from any route or dependency."""

    def __init__(self, status: int, detail: str, errors: Sequence[FieldProblem] = (),
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})

    def document(self) -> ProblemDocument:
        return ProblemDocument(title=HTTPStatus(self.status).phrase, status=self.status,
                               detail=self.detail, errors=self.errors)


def field_problem(location: Sequence[str | int], reason: str) -> FieldProblem:
    """A field path (``body.data.montant``) and pydantic's message for it."""
    return FieldProblem(field=".".join(str(part) for part in location) or "body",
                        reason=reason)


def respond(problem: Problem) -> JSONResponse:
    return JSONResponse(problem.document().model_dump(exclude_none=True),
                        status_code=problem.status, headers=problem.headers,
                        media_type=PROBLEM_JSON)


def _validation(errors: Sequence[Any]) -> Problem:
    """FastAPI's validation errors, stripped of the input and of unknown keys' names."""
    found = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        if error.get("type") == "extra_forbidden":
            location, reason = location[:-1], "an unknown attribute"
        else:
            reason = str(error.get("msg", "invalid"))
        found.append(field_problem(location, reason))
    return Problem(422, "the request does not match its schema", found)


def install(app: FastAPI) -> None:
    """Make every refusal of ``app`` a problem document."""

    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return respond(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return respond(_validation(exc.errors()))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        told = getattr(exc, "problem", None)  # an HTTPException that knows its problem
        if isinstance(told, Problem):
            return respond(told)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return respond(Problem(exc.status_code, str(exc.detail), headers=headers))

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        return crashed(request, exc)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)


_METHODS: Final = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method the app takes at the request's path, for a 405's ``Allow``: Starlette
    names only the first matching route's, and a path may have a route per method (a
    population is enrolled by POST and released by DELETE). Each method is tried against the
    app's routes, included routers too, as the router itself would match it."""
    routes = request.app.router.routes
    return ", ".join(method for method in _METHODS
                     if any(route.matches({**request.scope, "method": method})[0] == Match.FULL
                            for route in routes))


def crashed(request: Request, exc: Exception) -> JSONResponse:
    """A request that failed: logged by route template and the error's type only (its message
    may quote what the caller sent), answered 500 saying nothing of the cause."""
    route = request.scope.get("route")  # its template: the path itself may hold anything
    log.error("request failed", route=getattr(route, "path", None), error=type(exc).__name__)
    return respond(Problem(500, "the gateway failed to handle this request"))


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemDocument,  # the model puts the schema in the components
             "content": {PROBLEM_JSON: {"schema": {
                 "$ref": "#/components/schemas/ProblemDocument"}}},
             "description": HTTPStatus(status).phrase}
    for status in (400, 401, 403, 404, 409, 413, 415, 422, 503)
}
"""The refusals a route may answer with, for its OpenAPI description."""
