"""A subscriber's portal: enrol and release the persons it follows, record their consent.

The same writes as ``circulation population add|remove`` and ``consent grant|withdraw``
(:mod:`streams.state.subjects`), with the same guarantee: a route answers ``200`` only once
every record is acknowledged by all replicas and fenced on every provider partition, so an event
published after the answer is routed under the new state. A withdrawal also sends the
subscriber an erasure notice for each person, under its own pseudonym.

An enrolment answers the subscriber's pseudonym of each subject by the subject's index in the
request, never the subject itself: the portal knows what it sent, and a response that repeated
NIRs would copy them into every log, cache and proxy on the way back.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Final

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from connectors.gateway.auth import Caller
from connectors.gateway.contracts import own_contract, require_a_subscriber
from connectors.gateway.problems import PROBLEM_RESPONSES, FieldProblem, Problem
from connectors.gateway.subjects import (
    SubjectsBody,
    check_count,
    references,
    subject_problems,
)
from schemas.registry import RegistryError
from streams.security.principals import Principal
from streams.settings import Settings
from streams.state.bus_state import ConsentStatus
from streams.state.contract import Contract
from streams.state.ledger import (
    MAX_EVIDENCE_REF,
    Channel,
    ConsentRefused,
    check_consent_texts,
)
from streams.state.subjects import Subject, distinct, pseudonyms, set_consent, set_population

router = APIRouter(prefix="/v1/contracts/{id}", tags=["portal"])

ContractId = Annotated[str, Path(alias="id", description="The contract's id.")]

_REFUSALS: Final[dict[int | str, dict[str, Any]]] = {
    status: PROBLEM_RESPONSES[status] for status in (400, 401, 403, 404, 413, 422, 503)}


# --- bodies -------------------------------------------------------------------------------


class ConsentDecisions(SubjectsBody):
    """One decision (a grant or a withdrawal) by each person named, as collected."""

    status: ConsentStatus = Field(description="granted, or withdrawn (an objection under an "
                                              "opt-out contract).")
    channel: Channel = Field("online_portal", description="How the decisions were collected.")
    evidence: str | None = Field(
        None, max_length=MAX_EVIDENCE_REF,
        description="Reference of the signed form or of the portal session (printable, no "
                    "NIR).")
    collected_by: str | None = Field(
        None, max_length=32, description="SIRET of the body that collected them; the "
                                         "contract's subscriber's SIRET when absent.")


_BODY_FIELDS: Final = {"collected_by": "body.collected_by", "evidence_ref": "body.evidence"}
"""The ledger's names for the consent texts, as the body names them."""


# --- answers ------------------------------------------------------------------------------


class SubjectsWritten(BaseModel):
    """What a request wrote: each distinct subject once."""

    contract_id: str
    written: int = Field(description="Distinct subjects written.")
    repeats: int = Field(description="Subjects named again in the request, written once.")


class PseudonymOf(BaseModel):
    """The subscriber's pseudonym of the subject at ``index`` in the request (for a company,
    its SIREN)."""

    index: int
    pseudonym: str


class Enrolment(SubjectsWritten):
    """An enrolment: the pseudonym the subscriber will receive for each subject sent."""

    pseudonyms: list[PseudonymOf] = Field(
        description="One per subject of the request, in request order (a repeat gets the same "
                    "pseudonym as its first occurrence).")


class ConsentsRecorded(SubjectsWritten):
    """Recorded consent decisions, and the erasure notices a withdrawal sent."""

    status: ConsentStatus
    erasure_notices: int = Field(description="Notices sent to the subscriber's delivery topic "
                                             "(withdrawals only).")


# --- routes -------------------------------------------------------------------------------


@router.post("/population", summary="Enrol persons or companies in the contract's population",
             responses=_REFUSALS)
async def enrol(contract_id: ContractId, body: SubjectsBody, who: Caller,
                request: Request) -> Enrolment:
    settings, contract, given = await _admitted(request, who, contract_id, body.subjects)
    shown = await asyncio.to_thread(pseudonyms, settings, contract, given)
    unique, repeats = distinct(given)
    async with _bus_answers():
        await set_population(settings, contract, unique, enrolled=True)
    return Enrolment(contract_id=contract.id, written=len(unique), repeats=repeats,
                     pseudonyms=[PseudonymOf(index=index, pseudonym=pseudonym)
                                 for index, pseudonym in enumerate(shown)])


@router.delete("/population", summary="Release persons or companies from the population",
               responses=_REFUSALS)
async def release(contract_id: ContractId, body: SubjectsBody, who: Caller,
                  request: Request) -> SubjectsWritten:
    settings, contract, given = await _admitted(request, who, contract_id, body.subjects)
    unique, repeats = distinct(given)
    async with _bus_answers():
        await set_population(settings, contract, unique, enrolled=False)
    return SubjectsWritten(contract_id=contract.id, written=len(unique), repeats=repeats)


@router.post("/consents", summary="Record persons' consent decisions (grant or withdrawal)",
             responses=_REFUSALS)
async def decide(contract_id: ContractId, body: ConsentDecisions, who: Caller,
                 request: Request) -> ConsentsRecorded:
    settings, contract, given = await _admitted(request, who, contract_id, body.subjects,
                                                consent_text_problems(body))
    unique, repeats = distinct(given)
    async with _bus_answers():
        await set_consent(settings, contract, unique, body.status, body.channel,
                          body.collected_by, body.evidence)
    return ConsentsRecorded(contract_id=contract.id, written=len(unique), repeats=repeats,
                    status=body.status,
                    erasure_notices=len(unique) if body.status == "withdrawn" else 0)


# --- steps --------------------------------------------------------------------------------


async def _admitted(request: Request, who: Principal, contract_id: str,
                    subjects: Sequence[str], problems: Sequence[FieldProblem] = (),
                    ) -> tuple[Settings, Contract, list[Subject]]:
    """The checks every route makes, cheapest first and the caller's rights before the body's
    content: a subscriber (403), a bounded request (413), its own contract (404, 403), then
    every subject and text valid (422, all problems at once); nothing is written before."""
    settings: Settings = request.app.state.settings
    require_a_subscriber(who)
    check_count(settings, subjects)
    async with _bus_answers():
        contract = await own_contract(settings, who, contract_id)
    found = [*subject_problems(subjects), *problems]
    if found:
        raise Problem(422, f"{len(found)} field(s) refused; nothing was written", found)
    return settings, contract, await references(settings, subjects)


def consent_text_problems(body: ConsentDecisions) -> list[FieldProblem]:
    """The ledger's own checks of the texts kept with a consent (no NIR, a valid SIRET, a
    short printable evidence), as problems of the body's fields, the value left out."""
    try:
        check_consent_texts(body.collected_by, body.evidence)
    except ConsentRefused as refused:
        return [FieldProblem(field=_BODY_FIELDS[refused.field],
                             reason=_unquoted(refused.reason))]
    return []


_QUOTED_NUMBER: Final = re.compile(r"\d{9,}")


def _unquoted(reason: str) -> str:
    """A reason without the numbers the identifier rules quote (a SIRET, its SIREN): a refusal
    repeats nothing it was sent."""
    return " ".join(_QUOTED_NUMBER.sub(" ", reason).split())


@asynccontextmanager
async def _bus_answers() -> AsyncIterator[None]:
    """A broker that does not answer is ``503``, not a crash: the request may be repeated as
    is, each subject's record written again to the same effect, then fenced."""
    try:
        yield
    except KafkaError as exc:
        raise Problem(503, f"the bus did not acknowledge ({type(exc).__name__}); some "
                           "records may be written, unfenced: repeat the request") from None
    except RegistryError as exc:
        raise Problem(503, f"the schema registry did not answer ({type(exc).__name__}): "
                           "repeat the request") from None
