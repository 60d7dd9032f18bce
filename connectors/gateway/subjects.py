"""The subjects a portal names in a request body: checked whole, then turned into references.

The same rules as ``circulation population`` and ``consent`` with a file
(:mod:`streams.state.subject_lists`): every subject is checked before anything is written, each
problem names the subject's place in the body (``body.subjects.3``, the form FastAPI gives a
malformed item) and never its value, since a refused subject is most often a NIR with a typo.
A request names at most ``gateway_max_subjects`` subjects (``413`` beyond): it is written and
fenced whole before it is answered, so its size is what a caller waits for.

Making references is an HMAC per subject and reads the subject secret: it runs in a worker
thread, so that a request of a thousand subjects does not hold up the event loop that serves
every other caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from connectors.gateway.problems import FieldProblem, Problem
from streams.settings import Settings
from streams.state.subject_lists import GivenSubject, identifier_problem
from streams.state.subjects import Subject, resolve

MAX_SUBJECT_CHARS: Final = 32
"""Longest subject accepted: a NIR written with spaces takes 21 characters, a SIREN 11."""

SubjectText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SUBJECT_CHARS)]


class SubjectsBody(BaseModel):
    """The persons (NIRs) or companies (SIRENs) a request is about."""

    model_config = ConfigDict(extra="forbid")

    subjects: list[SubjectText] = Field(
        min_length=1, description="NIRs (persons) or SIRENs (companies), spaces allowed; a "
        "subject given twice is written once. At most the gateway's gateway_max_subjects "
        "(1000 unless configured otherwise), 413 beyond.")


def place(index: int) -> str:
    """Where subject ``index`` sits in the body, as problems name it."""
    return f"body.subjects.{index}"


def check_count(settings: Settings, subjects: Sequence[str]) -> None:
    """Refuse (``413``) more subjects than one request may name."""
    if len(subjects) > settings.gateway_max_subjects:
        raise Problem(413, f"a request names at most {settings.gateway_max_subjects} subjects; "
                           "send the others in further requests")


def subject_problems(subjects: Sequence[str]) -> list[FieldProblem]:
    """Every invalid subject, by its place and the identifier rules' reason."""
    return [FieldProblem(field=place(index), reason=reason)
            for index, text in enumerate(subjects)
            if (reason := identifier_problem(text)) is not None]


async def references(settings: Settings, subjects: Sequence[str]) -> list[Subject]:
    """The subjects with their references, in body order, repeats included (all valid)."""
    given = [GivenSubject(text, place(index)) for index, text in enumerate(subjects)]
    return await asyncio.to_thread(resolve, settings, given)
