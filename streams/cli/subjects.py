"""``circulation population add|remove`` and ``circulation consent grant|withdraw``."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from schemas.identifiers import InvalidIdentifier
from streams.cli.console import console, fail, settings
from streams.ops import metrics
from streams.privacy.secret import SecretRefused
from streams.settings import Settings
from streams.state.bus_state import ConsentStatus
from streams.state.contract import Contract
from streams.state.ledger import Channel, ConsentRefused, check_consent_texts
from streams.state.subjects import (
    Subject,
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
SubjectsArg = Annotated[list[str], typer.Argument(help="NIRs (persons) or SIRENs (companies).")]


def _resolved(contract_id: str, raw: list[str]) -> tuple[Settings, Contract, list[Subject]]:
    """The subjects' references first (the subject secret is checked before the broker is
    asked anything), then the recorded contract."""
    config = settings()
    try:
        subjects = resolve(config, raw)
        return config, asyncio.run(find_contract(config, contract_id)), subjects
    except (LookupError, InvalidIdentifier, SecretRefused) as exc:
        fail(str(exc))


@population_app.command()
def add(contract: ContractArg, subjects: SubjectsArg) -> None:
    """Enrol subjects; prints each one's pseudonym for this subscriber as JSON lines."""
    config, found, resolved = _resolved(contract, subjects)
    try:
        shown = pseudonyms(config, found, resolved)
    except SecretRefused as exc:
        fail(str(exc))
    asyncio.run(set_population(config, found, resolved, enrolled=True))
    metrics.record_population_changes(found.id, True, len(resolved))
    for subject, pseudonym in zip(resolved, shown, strict=True):
        print(json.dumps({"subject": subject.given, "pseudonym": pseudonym}))


@population_app.command()
def remove(contract: ContractArg, subjects: SubjectsArg) -> None:
    """Release subjects; returns once routing workers will apply it to every later event."""
    config, found, resolved = _resolved(contract, subjects)
    asyncio.run(set_population(config, found, resolved, enrolled=False))
    metrics.record_population_changes(found.id, False, len(resolved))
    console.print(f"removed {len(resolved)} subject(s) from {contract}")


_CONSENT_OPTIONS = {"collected_by": "--collected-by", "evidence_ref": "--evidence"}


def _consent(contract: str, subjects: list[str], status: ConsentStatus,
             channel: Channel, collected_by: str | None, evidence: str | None) -> None:
    try:
        check_consent_texts(collected_by, evidence)
    except ConsentRefused as exc:
        fail(f"{_CONSENT_OPTIONS[exc.field]}: {exc.reason}")
    config, found, resolved = _resolved(contract, subjects)
    try:
        asyncio.run(set_consent(config, found, resolved, status, channel, collected_by,
                                evidence))
    except SecretRefused as exc:  # a withdrawal's notices: refused before anything is written
        fail(str(exc))
    metrics.record_consent_changes(found.id, status, len(resolved))
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
def grant(contract: ContractArg, subjects: SubjectsArg, channel: ChannelOpt = "online_portal",
          collected_by: CollectedBy = None, evidence: Evidence = None) -> None:
    """Record that each person consents to this contract."""
    _consent(contract, subjects, "granted", _channel(channel), collected_by, evidence)


@consent_app.command()
def withdraw(contract: ContractArg, subjects: SubjectsArg, channel: ChannelOpt = "online_portal",
             collected_by: CollectedBy = None, evidence: Evidence = None) -> None:
    """Record a withdrawal (or objection) and send the subscriber erasure notices."""
    _consent(contract, subjects, "withdrawn", _channel(channel), collected_by, evidence)
