"""``POST /v1/events``: a provider's change events, one or a batch, over HTTP.

The body is read here, bounded, before anything is judged: its media type says whether it is
one CloudEvent (``application/cloudevents+json``) or a batch
(``application/cloudevents-batch+json``, a JSON array), the CloudEvents JSON format's own two
media types. What is then done with the events is :mod:`connectors.gateway.ingestion`'s.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from connectors.gateway.accepted_events import AcceptedEvents
from connectors.gateway.auth import Caller
from connectors.gateway.ingestion import EventSender, Ingestion
from connectors.gateway.problems import PROBLEM_RESPONSES, FieldProblem, Problem
from connectors.gateway.request_body import media_type, parse_json, read_bounded
from schemas.cloudevent import PublishedEvent
from streams.settings import Settings

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"

_EVENT = PublishedEvent.model_json_schema(mode="validation")
_REQUEST_BODY = {"required": True, "content": {
    SINGLE: {"schema": _EVENT},
    BATCH: {"schema": {"type": "array", "items": _EVENT,
                       "description": "Written all or none."}},
}}

router = APIRouter(prefix="/v1", tags=["events"])


class Accepted(BaseModel):
    """The events Kafka holds, by id, in the order they were posted."""

    accepted: list[str] = Field(description="Each event's id (a fresh UUID for an event "
                                            "posted without one).")


def ingestion(settings: Settings, sender: EventSender) -> Ingestion:
    """The replica's ingestion, remembering accepted ids for the configured window."""
    return Ingestion(sender, AcceptedEvents(settings.gateway_idempotency_window_s))


@router.post(
    "/events", status_code=202, summary="Publish change events",
    description="One CloudEvent (`application/cloudevents+json`) or a batch "
    "(`application/cloudevents-batch+json`, written all or none), each checked as `circulation "
    "publish` checks a line. `202` once Kafka acknowledged every event; an event id accepted "
    "within the idempotency window is accepted again without a second record.",
    responses={status: PROBLEM_RESPONSES[status]
               for status in (400, 401, 403, 409, 413, 415, 422, 503)},
    openapi_extra={"requestBody": _REQUEST_BODY},
)
async def post_events(request: Request, who: Caller) -> Accepted:
    if who.kind != "provider":
        raise Problem(403, f"only a provider publishes events; the token is {who.name}'s")
    kind = media_type(request)
    if kind not in (SINGLE, BATCH):
        raise Problem(415, f"the body is {SINGLE} (one event) or {BATCH} (a batch)",
                      [FieldProblem(field="Content-Type", reason="not a CloudEvents JSON "
                                                                 "media type")])
    settings: Settings = request.app.state.settings
    body = parse_json(await read_bounded(request, settings.gateway_max_body_bytes))
    events = _batch(body, settings.gateway_max_batch_events) if kind == BATCH else [body]
    ids = await request.app.state.ingestion.ingest(who, events, batch=kind == BATCH)
    return Accepted(accepted=ids)


def _batch(body: Any, limit: int) -> list[Any]:
    """The batch's events: a JSON array of at most ``limit``."""
    if not isinstance(body, list):
        raise Problem(422, "a batch is a JSON array of CloudEvents",
                      [FieldProblem(field="body", reason="not a JSON array")])
    if len(body) > limit:
        raise Problem(413, f"a batch holds at most {limit:,} events",
                      [FieldProblem(field="body", reason=f"more than {limit:,} events")])
    return body
