"""``circulation population add|remove`` and ``circulation consent grant|withdraw``.

Subjects come as arguments, from a file (``--from-file``), or both. A file is read and checked
whole before the subject secret or the broker is asked anything, and refused with every bad
line's number (:mod:`streams.state.subject_lists`). Its long steps show a progress bar on stderr,
only when stderr is a terminal: stdout carries ``population add``'s JSON lines, untouched.
"""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import Annotated, NoReturn

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from schemas.identifiers import InvalidIdentifier
from streams.cli.console import console, errors, fail, settings
from streams.privacy.secret import SecretRefused
from streams.settings import Settings
from streams.state.bus_state import ConsentStatus
from streams.state.contract import Contract
from streams.state.ledger import Advance, Channel, ConsentRefused, check_consent_texts
from streams.state.subject_lists import GivenSubject, SubjectListRefused, read_subject_list
from streams.state.subjects import (
    Subject,
    distinct,
    find_contract,
    pseudonyms,
    resolve,
    set_consent,
    set_population,
)

population_app = typer.Typer(help="The persons (or companies) a subscriber follows.",
                             no_args_is_help=True)
consent_app = typer.Typer(help="Persons' consent decisions per contract.", no_args_is_help=True)

ContractArg = Annotated[str, typer.Argument(help="Contract id.")]
SubjectsArg = Annotated[list[str] | None, typer.Argument(
    help="NIRs (persons) or SIRENs (companies); more than a few, or any real NIR: --from-file.",
    show_default=False)]
FromFile = Annotated[str | None, typer.Option(
    "--from-file", metavar="PATH", show_default=False,
    help="A file of subjects: one NIR (or SIREN) per line, or a CSV (, or ;) with a column "
         "named nir. - reads standard input. Checked whole before anything is written.")]


_UPDATE_EVERY = 250
"""Subjects between two updates of a bar: it is redrawn ten times a second whatever the updates,
and an update per subject would cost more than the HMAC it reports."""


class _Steps:
    """The long steps of a command given a file, each with its bar on stderr; nothing at all
    without a file, or when stderr is not a terminal (a log, a pipe). stdout is never redirected
    into the bar: ``population add`` writes its JSON lines there."""

    def __init__(self, from_file: str | None) -> None:
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=errors, transient=True,
                             redirect_stdout=False,
                             disable=from_file is None or not errors.is_terminal)

    def __enter__(self) -> _Steps:
        self._bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._bar.stop()

    def step(self, description: str, total: int | None, then: str | None = None) -> Advance:
        """A new bar; advance it with the returned callable. Once ``total`` is reached, the bar
        says ``then`` (what the command still waits for) instead."""
        task = self._bar.add_task(description, total=total)
        done = shown = 0

        def advance(count: int) -> None:
            nonlocal done, shown
            done += count
            finished = total is not None and done >= total
            if done - shown >= _UPDATE_EVERY or finished:
                shown = done
                self._bar.update(task, completed=done,
                                 description=then if finished and then else description)

        return advance

    def pending(self, description: str) -> Advance:
        """A bar for a step of unknown length (reading a file); call the returned callable
        with what it came to once it is over."""
        task = self._bar.add_task(description, total=None)

        def over(count: int) -> None:
            self._bar.update(task, total=count, completed=count)

        return over


def _given(subjects: list[str] | None, from_file: str | None,
           steps: _Steps) -> list[str | GivenSubject]:
    """The arguments (``subject #N``), then the file's subjects (``line N``)."""
    given: list[str | GivenSubject] = list(subjects or [])
    if from_file is None:
        if not given:
            fail("no subject given: name NIRs or SIRENs as arguments, or --from-file PATH",
                 code=2)
        return given
    read = steps.pending("reading the file")
    try:
        listed = read_subject_list(from_file)
    except SubjectListRefused as refused:
        _refuse(refused)
    read(len(listed))
    return [*given, *listed]


def _refuse(refused: SubjectListRefused) -> NoReturn:
    """Say why the file was refused: each line's number and problem, never its content."""
    if refused.whole_file:
        fail(f"--from-file: {refused.problems[0]}")
    more = refused.total - len(refused.problems)
    for problem in [*refused.problems, *([f"… and {more:,} more"] if more else [])]:
        errors.print(problem, markup=False, highlight=False, soft_wrap=True)
    fail(f"--from-file: {refused.total:,} line(s) refused; nothing was written")


def _resolved(contract_id: str, subjects: list[str] | None, from_file: str | None,
              steps: _Steps) -> tuple[Settings, Contract, list[Subject]]:
    """The subjects' references first (the file checked, then the subject secret, before the
    broker is asked anything), then the recorded contract. Each subject once."""
    config = settings()
    given = _given(subjects, from_file, steps)
    try:
        resolved = resolve(config, given, steps.step("resolving references", len(given)))
        found = asyncio.run(find_contract(config, contract_id))
    except (LookupError, InvalidIdentifier, SecretRefused) as exc:
        fail(str(exc))
    unique, repeats = distinct(resolved)
    if repeats:
        errors.print(f"{repeats:,} repeated subject(s) skipped: each is written once",
                     highlight=False)
    return config, found, unique


def _writing(steps: _Steps, total: int) -> Advance:
    return steps.step("writing", total, then="fencing")


@population_app.command()
def add(contract: ContractArg, subjects: SubjectsArg = None, from_file: FromFile = None) -> None:
    """Enrol subjects; prints each one's pseudonym for this subscriber as JSON lines."""
    with _Steps(from_file) as steps:
        config, found, resolved = _resolved(contract, subjects, from_file, steps)
        try:
            shown = pseudonyms(config, found, resolved)
        except SecretRefused as exc:
            fail(str(exc))
        asyncio.run(set_population(config, found, resolved, enrolled=True,
                                   on_written=_writing(steps, len(resolved))))
    for subject, pseudonym in zip(resolved, shown, strict=True):
        print(json.dumps({"subject": subject.given, "pseudonym": pseudonym}))


@population_app.command()
def remove(contract: ContractArg, subjects: SubjectsArg = None,
           from_file: FromFile = None) -> None:
    """Release subjects; returns once routing workers will apply it to every later event."""
    with _Steps(from_file) as steps:
        config, found, resolved = _resolved(contract, subjects, from_file, steps)
        asyncio.run(set_population(config, found, resolved, enrolled=False,
                                   on_written=_writing(steps, len(resolved))))
    console.print(f"removed {len(resolved)} subject(s) from {contract}")


_CONSENT_OPTIONS = {"collected_by": "--collected-by", "evidence_ref": "--evidence"}


def _consent(contract: str, subjects: list[str] | None, from_file: str | None,
             status: ConsentStatus, channel: Channel, collected_by: str | None,
             evidence: str | None) -> None:
    try:
        check_consent_texts(collected_by, evidence)
    except ConsentRefused as exc:
        fail(f"{_CONSENT_OPTIONS[exc.field]}: {exc.reason}")
    with _Steps(from_file) as steps:
        config, found, resolved = _resolved(contract, subjects, from_file, steps)
        written = _writing(steps, len(resolved))
        notified = (steps.step("sending erasure notices", len(resolved))
                    if status == "withdrawn" else None)
        try:
            asyncio.run(set_consent(config, found, resolved, status, channel, collected_by,
                                    evidence, written, notified))
        except SecretRefused as exc:  # a withdrawal's notices: refused before anything written
            fail(str(exc))
    console.print(f"consent {status} for {len(resolved)} subject(s) under {contract}")


ChannelOpt = Annotated[str, typer.Option(help="online_portal, counter, paper_form or phone.")]
CollectedBy = Annotated[str | None, typer.Option(
    help="SIRET of the body that collected it (default: the subscriber's).")]
Evidence = Annotated[str | None, typer.Option(help="Reference of the signed form or session.")]
_CHANNELS: dict[str, Channel] = {c: c for c in ("online_portal", "counter", "paper_form",
                                                  "phone")}


def _channel(value: str) -> Channel:
    if value not in _CHANNELS:
        fail(f"--channel: unknown channel {value!r}; choose one of {', '.join(_CHANNELS)}")
    return _CHANNELS[value]


@consent_app.command()
def grant(contract: ContractArg, subjects: SubjectsArg = None, from_file: FromFile = None,
          channel: ChannelOpt = "online_portal", collected_by: CollectedBy = None,
          evidence: Evidence = None) -> None:
    """Record that each person consents to this contract."""
    _consent(contract, subjects, from_file, "granted", _channel(channel), collected_by,
             evidence)


@consent_app.command()
def withdraw(contract: ContractArg, subjects: SubjectsArg = None, from_file: FromFile = None,
             channel: ChannelOpt = "online_portal", collected_by: CollectedBy = None,
             evidence: Evidence = None) -> None:
    """Record a withdrawal (or objection) and send the subscriber erasure notices."""
    _consent(contract, subjects, from_file, "withdrawn", _channel(channel), collected_by,
             evidence)
