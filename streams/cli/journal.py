"""``circulation journal``: what the bus did about one person, or would do today.

The subject is a NIR or a SIREN, given on the command line (it lands in the shell's history:
see the README). It is checked and turned into its subject reference at once; a refusal says
what is wrong and never repeats it. The view is read embedded: brought up to date with the
topics first (:func:`streams.journal.follower.caught_up_view`), in ``CIRCULATION_JOURNAL_DIR``
(``cache_dir/journal`` when unset), which a running gateway holding that directory locks.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from streams.cli.console import console, fail, settings
from streams.journal.follower import caught_up_view
from streams.journal.queries import Journal, Line, Receiver, journal, to_json, upcoming
from streams.journal.view import ViewLocked
from streams.settings import Settings
from streams.state.subject_lists import identifier_problem
from streams.state.subjects import resolve

SubjectArg = Annotated[str, typer.Argument(
    help="The person's NIR (spaces allowed) or the company's SIREN.", show_default=False)]


def journal_command(
    subject: SubjectArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    forward: Annotated[bool, typer.Option(
        "--upcoming", help="Who would receive what if each dataset changed for this "
        "subject today, instead of the history.")] = False,
) -> None:
    """Everything the bus did about a person (deliveries, withheld decisions, consent and
    enrolment history), or with --upcoming who would receive their data today."""
    problem = identifier_problem(subject)
    if problem is not None:
        fail(f"SUBJECT: {problem}")
    config = settings()
    reference = resolve(config, [subject])[0].reference
    try:
        answer = asyncio.run(_read(config, reference, forward))
    except ViewLocked as exc:
        fail(str(exc))
    if as_json:
        console.print_json(json.dumps(to_json(answer), ensure_ascii=False))
    elif isinstance(answer, Journal):
        _show_journal(answer)
    else:
        _show_upcoming(answer)


async def _read(config: Settings, reference: str, forward: bool) -> Journal | list[Receiver]:
    async with caught_up_view(config) as view:
        if forward:
            return upcoming(view, reference, datetime.now(UTC).date())
        return journal(view, reference)


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    return table


def _row(table: Table, *cells: str | None) -> None:
    """A row whose cells are text, never markup: a contract's purpose or legal basis is
    whatever its author wrote (``CRPA [art. L114-8]`` would lose its brackets, ``[/]`` would
    stop the command)."""
    table.add_row(*(escape(cell or "") for cell in cells))


def _when(line: Line) -> str:
    return line.at.isoformat(timespec="seconds")


def _show_journal(found: Journal) -> None:
    deliveries = _table("Deliveries", "when", "subscriber", "contract", "purpose",
                        "legal basis", "fields", "kept until")
    for line in found.deliveries:
        _row(deliveries, _when(line), line.subscriber, line.contract_id, line.purpose,
             line.legal_basis, ", ".join(line.fields),
             line.kept_until.date().isoformat() if line.kept_until else "?")
    withheld = _table("Withheld", "when", "subscriber", "contract", "dataset", "reason")
    for line in found.withheld:
        _row(withheld, _when(line), line.subscriber, line.contract_id, line.dataset,
             line.reason)
    history = _table("Consent and enrolment", "when", "contract", "change", "channel")
    for line in sorted([*found.consents, *found.enrolments], key=lambda each: each.at):
        change = (f"consent {line.status}" if line.kind == "consent"
                  else "enrolled" if line.enrolled else "released")
        _row(history, _when(line), line.contract_id, change, line.channel or "")
    for table in (deliveries, withheld, history):
        console.print(table)


def _show_upcoming(found: list[Receiver]) -> None:
    table = _table("If each dataset changed today", "dataset", "subscriber", "contract",
                   "purpose", "outcome")
    for each in found:
        outcome = (f"receives {', '.join(each.fields)}" if each.would_receive
                   else f"withheld ({each.reason})")
        _row(table, each.dataset, each.subscriber, each.contract_id, each.purpose, outcome)
    console.print(table)
