"""``POST /v1/journal``: a person's journal, for the operator answering that person's request.

The subject (a NIR or a SIREN) travels in the JSON body, never in the URL, which proxies and
access logs keep; only the operator's token (``bus-admin``) may ask, since the answer is one
person's history whoever the subscriber. A refused subject is named by its place, never its
value. The answer comes from the gateway's view (:mod:`streams.journal.view`), caught up with
the topics first, so that it holds every write made before the request.

A person asks for their own journal on the journal page (:mod:`connectors.gateway.citizen`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Final

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from connectors.gateway.auth import Caller
from connectors.gateway.problems import PROBLEM_RESPONSES, FieldProblem, Problem
from connectors.gateway.subjects import SubjectText
from streams.journal.follower import JournalFollower, JournalFollowerStopped
from streams.journal.queries import Journal, Receiver, journal, upcoming
from streams.settings import Settings
from streams.state.subject_lists import identifier_problem
from streams.state.subjects import resolve

router = APIRouter(prefix="/v1/journal", tags=["journal"])

_REFUSALS: Final[dict[int | str, dict[str, Any]]] = {
    status: PROBLEM_RESPONSES[status] for status in (400, 401, 403, 422, 503)}


class JournalRequest(BaseModel):
    """Whose journal: a person's NIR or a company's SIREN."""

    model_config = ConfigDict(extra="forbid")

    subject: SubjectText = Field(description="A NIR (spaces allowed) or a SIREN.")


def follower_of(request: Request) -> JournalFollower:
    """The follower keeping the gateway's journal view, or ``503`` when it keeps none."""
    follower: JournalFollower | None = getattr(request.app.state, "journal", None)
    if follower is None:
        raise Problem(503, "this gateway keeps no journal view (CIRCULATION_JOURNAL_DIR)")
    return follower


async def caught_up(request: Request) -> JournalFollower:
    """The follower, once its view holds everything written before this request."""
    follower = follower_of(request)
    try:
        await follower.caught_up()
    except JournalFollowerStopped:
        raise Problem(503, "the journal view no longer follows the bus") from None
    return follower


async def _reference(request: Request, subject: str) -> str:
    problem = identifier_problem(subject)
    if problem is not None:
        raise Problem(422, "1 field(s) refused", [FieldProblem(field="body.subject",
                                                              reason=problem)])
    settings: Settings = request.app.state.settings
    return (await asyncio.to_thread(resolve, settings, [subject]))[0].reference


def _require_operator(who: Caller) -> None:
    if who.kind != "admin":
        raise Problem(403, f"a person's journal: only the operator may ask; the token is "
                           f"{who.name}'s")


@router.post("", summary="A person's journal: deliveries, withheld decisions, consents and "
             "enrolments", responses=_REFUSALS)
async def person_journal(body: JournalRequest, who: Caller, request: Request) -> Journal:
    _require_operator(who)
    reference = await _reference(request, body.subject)
    return journal((await caught_up(request)).view, reference)


@router.post("/upcoming", summary="Who would receive what if each dataset changed for the "
             "person today", responses=_REFUSALS)
async def person_upcoming(body: JournalRequest, who: Caller,
                          request: Request) -> list[Receiver]:
    _require_operator(who)
    reference = await _reference(request, body.subject)
    return upcoming((await caught_up(request)).view, reference, datetime.now(UTC).date())
