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

from fastapi import Request

from connectors.event_files import load_json
from connectors.gateway.problems import FieldProblem, Problem
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
