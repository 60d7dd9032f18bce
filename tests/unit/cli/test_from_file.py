"""``--from-file``: the four subject commands take their subjects from a file (or standard
input), check it whole before anything is written, write each subject once, and keep stdout for
``population add``'s JSON lines whatever the progress bar does on stderr.

The broker is never reached: the contract lookup and the writes are replaced by recorders, so
what a command would write is what they were handed.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from schemas.catalog import Catalog
from schemas.nir_detection import contains_nir
from streams.cli import app
from streams.cli import subjects as command
from streams.dev.synthetic import companies, people
from streams.privacy.pseudonyms import SubjectReferences
from streams.privacy.secret import subject_secret
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.ledger import Advance
from streams.state.subjects import Subject

pytest_plugins = ("tests.unit.command_settings",)  # the fresh_settings fixture

NIRS = [person.nir for person in people(20261203, 6)]
SIREN = companies(20261203, 1)[0]
BAD_KEY = NIRS[5][:13] + f"{(int(NIRS[5][13:]) % 97) + 1:02d}"
LYON = Contract.checked({
    "id": "lyon-cantine-2026", "subscriber": "ville-de-lyon",
    "subscriber_siret": "21690123100011", "purpose": "Tarification sociale",
    "legal_basis": "CRPA art. L114-8", "datasets": {"quotient_familial": ["quotient_familial"]},
    "consent": "opt_in", "population": "enrolled", "retention": "P90D",
    "valid_from": "2026-01-01"}, Catalog.load())
COMMANDS = [["population", "add"], ["population", "remove"], ["consent", "grant"],
            ["consent", "withdraw"]]


@dataclass
class Written:
    """What the commands handed to the writes, in order; each acknowledged at once."""

    calls: list[tuple[str, list[str]]] = field(default_factory=list)

    async def population(self, settings: Settings, contract: Contract,
                         subjects: Sequence[Subject], enrolled: bool,
                         on_written: Advance | None = None) -> None:
        self._record("enrolled" if enrolled else "released", subjects, on_written)

    async def consent(self, settings: Settings, contract: Contract, subjects: Sequence[Subject],
                      status: str, channel: str, collected_by: str | None = None,
                      evidence_ref: str | None = None, on_written: Advance | None = None,
                      on_notified: Advance | None = None) -> None:
        self._record(status, subjects, on_written)
        if status == "withdrawn":
            self._record("notified", subjects, on_notified)

    def _record(self, what: str, subjects: Sequence[Subject], on_written: Advance | None,
                ) -> None:
        self.calls.append((what, [subject.reference for subject in subjects]))
        for _ in subjects:
            if on_written is not None:
                on_written(1)


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
            fresh_settings: None) -> Written:
    """A development bus's settings (its secrets made in this test's folder), no broker."""
    monkeypatch.setenv("CIRCULATION_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CIRCULATION_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("CIRCULATION_SCHEMA_REGISTRY_URL", "http://127.0.0.1:1")
    recorder = Written()

    async def find_contract(settings: Settings, contract_id: str) -> Contract:
        return LYON

    monkeypatch.setattr(command, "find_contract", find_contract)
    monkeypatch.setattr(command, "set_population", recorder.population)
    monkeypatch.setattr(command, "set_consent", recorder.consent)
    return recorder


def references(tmp_path: Path, *subjects: str) -> list[str]:
    """The references the commands make under the secret they generated in ``tmp_path``."""
    made = SubjectReferences(subject_secret(Settings(cache_dir=tmp_path / "cache")))
    return [made.for_company(s) if len(s) == 9 else made.for_person(s) for s in subjects]


def invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin)


def subject_file(tmp_path: Path, text: str, name: str = "familles.csv") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return str(path)


@pytest.mark.parametrize("subcommand", COMMANDS)
def test_each_subject_command_takes_its_subjects_from_a_file(
        written: Written, tmp_path: Path, subcommand: list[str]) -> None:
    path = subject_file(tmp_path, "\ufeffNom;NIR\r\n" + "".join(
        f"X;{s}\r\n" for s in [*NIRS[:3], SIREN]))
    result = invoke(*subcommand, LYON.id, "--from-file", path)
    assert result.exit_code == 0, result.output + result.stderr
    assert written.calls[0][1] == references(tmp_path, *NIRS[:3], SIREN)


def test_arguments_and_a_file_combine_and_each_subject_is_written_once(
        written: Written, tmp_path: Path) -> None:
    spaced = " ".join(NIRS[1][i:i + 3] for i in range(0, 15, 3))
    path = subject_file(tmp_path, f"{NIRS[1]}\n{NIRS[2]}\n\n{NIRS[0]}\n{NIRS[2]}\n")
    result = invoke("population", "add", LYON.id, NIRS[0], spaced, "--from-file", path)
    assert result.exit_code == 0, result.stderr
    assert written.calls == [("enrolled", references(tmp_path, *NIRS[:3]))]
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["subject"] for line in printed] == [NIRS[0], spaced, NIRS[2]]
    assert result.stderr.strip() == "3 repeated subject(s) skipped: each is written once"


def test_standard_input_is_read_for_a_dash(written: Written, tmp_path: Path) -> None:
    result = invoke("consent", "grant", LYON.id, "--from-file", "-", stdin=f"nir\n{NIRS[0]}\n")
    assert result.exit_code == 0, result.stderr
    assert written.calls == [("granted", references(tmp_path, NIRS[0]))]


@pytest.mark.parametrize("subcommand", COMMANDS)
def test_a_command_given_no_subject_at_all_refuses(written: Written,
                                                   subcommand: list[str]) -> None:
    result = invoke(*subcommand, LYON.id)
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: no subject given: name NIRs or SIRENs as "
                                      "arguments, or --from-file PATH")


@pytest.mark.parametrize("subcommand", COMMANDS)
def test_one_bad_line_writes_nothing_and_every_bad_line_is_named_never_shown(
        written: Written, tmp_path: Path, subcommand: list[str]) -> None:
    path = subject_file(tmp_path, "nom;nir\n" + f"A;{NIRS[0]}\nB;{BAD_KEY}\nC;\n"
                        + f"D;{NIRS[1]}99\nE;{NIRS[2]}\n")
    result = invoke(*subcommand, LYON.id, NIRS[3], "--from-file", path)
    assert result.exit_code == 1
    assert written.calls == []
    assert result.stderr.splitlines() == [
        "line 3: invalid NIR (its control key does not match)",
        "line 4: the nir cell is empty",
        "line 5: invalid NIR (expected 15 characters, got 17)",
        "error: --from-file: 3 line(s) refused; nothing was written",
    ]
    assert not contains_nir(result.output + result.stderr)


def test_past_twenty_bad_lines_the_rest_are_counted(written: Written, tmp_path: Path) -> None:
    path = subject_file(tmp_path, "\n".join([NIRS[0], *[BAD_KEY] * 1000]))
    result = invoke("population", "remove", LYON.id, "--from-file", path)
    lines = result.stderr.splitlines()
    assert (result.exit_code, len(lines)) == (1, 22)
    assert lines[0] == "line 2: invalid NIR (its control key does not match)"
    assert lines[-2:] == ["… and 980 more",
                          "error: --from-file: 1,000 line(s) refused; nothing was written"]
    assert written.calls == []


@pytest.mark.parametrize(("make", "said"), [
    (lambda folder: str(folder / "absent.csv"), "no such file"),
    (str, "a directory, not a file"),
    (lambda folder: subject_file(folder, "nom;numero\nX;1\n"),
     "line 1: a CSV header without a column named nir (the column of NIRs must be named so)"),
])
def test_a_file_refused_as_a_whole_says_why_in_one_line(
        written: Written, tmp_path: Path, make: Any, said: str) -> None:
    result = invoke("consent", "withdraw", LYON.id, "--from-file", make(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: --from-file: {said}"]
    assert written.calls == []


def test_without_a_terminal_no_progress_bar_is_drawn(written: Written, tmp_path: Path) -> None:
    path = subject_file(tmp_path, "\n".join(NIRS))
    result = invoke("population", "remove", LYON.id, "--from-file", path)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == f"removed {len(NIRS)} subject(s) from {LYON.id}\n"


def test_on_a_terminal_the_bar_is_drawn_on_stderr_and_stdout_keeps_only_json_lines(
        written: Written, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = io.StringIO()
    monkeypatch.setattr(command, "errors", Console(file=terminal, force_terminal=True,
                                                   width=120))
    path = subject_file(tmp_path, "\n".join(NIRS))
    result = invoke("population", "add", LYON.id, "--from-file", path)
    assert result.exit_code == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["subject"] for line in printed] == NIRS
    drawn = terminal.getvalue()
    for step in ("reading the file", "resolving references", "fencing"):
        assert step in drawn
    assert not contains_nir(drawn)


def test_a_withdrawal_s_erasure_notices_have_their_bar(
        written: Written, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = io.StringIO()
    monkeypatch.setattr(command, "errors", Console(file=terminal, force_terminal=True,
                                                   color_system=None, width=120))
    result = invoke("consent", "withdraw", LYON.id, "--from-file",
                    subject_file(tmp_path, "\n".join(NIRS)))
    assert result.exit_code == 0, result.stderr
    assert [what for what, _ in written.calls] == ["withdrawn", "notified"]
    assert re.search(rf"sending erasure notices +━+ +{len(NIRS)}/{len(NIRS)}",
                     terminal.getvalue())
    assert result.stdout == f"consent withdrawn for {len(NIRS)} subject(s) under {LYON.id}\n"


def test_a_file_is_judged_before_the_subject_secret_and_the_broker(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_settings: None) -> None:
    """No secret configured on a secured bus, no broker: a bad file is still told line by
    line, since neither is asked anything before the file was judged."""
    for name, value in {"CIRCULATION_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                        "CIRCULATION_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                        "CIRCULATION_SCHEMA_REGISTRY_URL": "http://127.0.0.1:1",
                        "CIRCULATION_CACHE_DIR": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(name, value)
    for name in ("CIRCULATION_SUBJECT_SECRET", "CIRCULATION_PSEUDONYM_SECRET"):
        monkeypatch.delenv(name, raising=False)
    result = invoke("consent", "grant", LYON.id, "--from-file",
                    subject_file(tmp_path, f"{NIRS[0]}\n{BAD_KEY}\n"))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "line 2: invalid NIR (its control key does not match)",
        "error: --from-file: 1 line(s) refused; nothing was written"]


def _command_line(cmdline: Path) -> str:
    """A process's command line as ``ps`` shows it; read again while it is empty, as it is for
    a moment while the process is being started."""
    deadline = time.monotonic() + 30
    while not (shown := cmdline.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return shown.replace(b"\x00", b" ").decode()


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux's /proc")
def test_arguments_show_in_every_user_s_ps_and_a_file_s_subjects_do_not(
        tmp_path: Path) -> None:
    """What the README's warning rests on: ``ps`` shows a process's arguments to every user of
    the machine (``/proc/<pid>/cmdline``, readable by all) while it runs."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("CIRCULATION_")}
    env |= {"CIRCULATION_CACHE_DIR": str(tmp_path), "CIRCULATION_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    shown = {}
    for name, subjects in (("argument", [NIRS[0]]), ("file", [])):
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "population", "remove", LYON.id,
             *subjects, "--from-file", "-"], env=env, stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:  # it waits for standard input, which stays open until read here
            cmdline = Path(f"/proc/{process.pid}/cmdline")
            shown[name] = _command_line(cmdline)
            assert cmdline.stat().st_mode & stat.S_IROTH
        finally:
            process.communicate(b"", timeout=60)
    assert NIRS[0] in shown["argument"]
    assert not contains_nir(shown["file"])


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_an_interactive_shell_keeps_arguments_in_its_history(tmp_path: Path) -> None:
    """The README's other warning: a command typed in an interactive shell, arguments and all,
    is written to the history file; with --from-file only the file's name is."""
    history = tmp_path / "history"
    typed = (f": circulation population add {LYON.id} {NIRS[0]}\n"
             f": circulation population add {LYON.id} --from-file familles.csv\nexit\n")
    subprocess.run(["bash", "--norc", "-i"], input=typed, text=True, capture_output=True,
                   env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
                        "HISTFILE": str(history)}, timeout=60, check=True)
    kept = history.read_text().splitlines()
    assert f": circulation population add {LYON.id} {NIRS[0]}" in kept
    assert f": circulation population add {LYON.id} --from-file familles.csv" in kept
