"""A request's body, read within a limit and as JSON, refused as a problem when it is not.

The gateway never buffers a body it has not bounded: a ``Content-Length`` above the limit is
refused before a byte is read, and a body sent without one (chunked) is refused as soon as what
has arrived passes the limit, so a caller cannot make a replica hold more than the limit in
memory for one request. JSON is read as a provider's file line is
(:func:`connectors.event_files.load_json`): nesting too deep for the parser is a refusal, not a
crash.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.event_files import load_json
from connectors.gateway.problems import FieldProblem, Problem, respond
from connectors.publisher import PublishRefused


def media_type(request: Request) -> str:
    """The request's media type, without its parameters (``charset``), lower-case."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_bounded(request: Request, limit: int) -> bytes:
    """The whole body, or a ``413`` problem once it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(400, "Content-Length is not a number of bytes",
                          [FieldProblem(field="Content-Length", reason="not a byte count")])
        if int(declared) > limit:
            raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> Problem:
    return Problem(413, f"the body is larger than {limit:,} bytes",
                   [FieldProblem(field="body", reason=f"at most {limit:,} bytes")])


def parse_json(body: bytes) -> Any:
    """The body as JSON (UTF-8), or a ``400`` problem saying why, never quoting it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Problem(400, "the body is not UTF-8 text", [FieldProblem(
            field="body", reason=f"not UTF-8 (byte {exc.start + 1})")]) from None
    try:
        return load_json(text, "body")
    except PublishRefused as exc:
        raise Problem(400, "the body is not JSON", [FieldProblem(
            field=exc.field, reason=exc.reason)]) from None


class BodyTooLarge(HTTPException):
    """A body that passed the limit while it was being read (an ``HTTPException``, so that
    FastAPI's own body parsing lets it through as it is rather than as a parse error)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than {limit:,} bytes")
        self.problem = _too_large(limit)


class BoundedBodies:
    """Every request's body bounded, whatever route reads it and however: a ``Content-Length``
    over the limit is answered ``413`` before the application sees the request, and a body sent
    without one fails its reader as soon as what arrived passes the limit. The routes that
    parse a declared model (the portal's) would otherwise buffer and parse any size, and do it
    before they know who is calling."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await respond(_too_large(self.limit))(scope, receive, send)
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, bounded, send)
