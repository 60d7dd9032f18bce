"""``circulation journal``'s tables print what contracts say as text, never as markup."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streams.cli import journal as command
from streams.cli.console import console
from streams.journal.queries import Journal, Line, Receiver

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
PURPOSE = "Tarification [bold]sociale[/]"
BASIS = "CRPA [art. L114-8]"


def test_a_contract_s_brackets_are_printed_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    # no cell wrapped, whatever the terminal; the private field, so that undoing it leaves the
    # console measuring the terminal again (its public setter would pin the width it had)
    monkeypatch.setattr(console, "_width", 300)
    line = Line("delivery", AT, "c-[x]", "ville-[lyon]", PURPOSE, BASIS,
                "statut_etudiant_boursier", ("echelon",), AT)
    withheld = Line("withheld", AT, "c-[x]", "ville-[lyon]", PURPOSE, BASIS,
                    "statut_etudiant_boursier", reason="no_[consent]")
    with console.capture() as captured:
        command._show_journal(Journal([line], [withheld], [], []))
        command._show_upcoming([Receiver("statut_etudiant_boursier", "c-[x]", "ville-[lyon]",
                                         PURPOSE, BASIS, "opt_in", False, (), "[/]")])
    printed = captured.get()
    for text in ("[art.", "L114-8]", "[bold]", "[/]", "c-[x]", "no_[consent]"):
        assert text in printed
