"""``circulation ingest-file``: the format comes from ``--format`` or the suffix, and a file the
command cannot start on ends it in one line, before any connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli import app
from streams.cli.ingest import FileFormat, file_format
from streams.settings import get_settings


@pytest.mark.parametrize(("name", "given", "expected"), [
    ("envoi.jsonl", None, "jsonl"), ("envoi.JSONL", None, "jsonl"), ("envoi.csv", None, "csv"),
    ("envoi.json", None, None), ("envoi.json", FileFormat.jsonl, "jsonl"),
    ("envoi.txt", FileFormat.csv, "csv"), ("envoi.csv", FileFormat.jsonl, "jsonl"),
    ("envoi.txt", None, None),
])
def test_the_format_is_the_one_named_else_the_suffix_s(name: str, given: FileFormat | None,
                                                       expected: str | None) -> None:
    assert file_format(Path(name), given) == expected


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no .env file
    monkeypatch.setenv("CIRCULATION_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CIRCULATION_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize(("name", "message"), [
    ("envoi.txt", "cannot tell the format of envoi.txt from its suffix: say --format"),
    ("envoi.json", "cannot tell the format of envoi.json from its suffix: say --format"),
    ("absent.jsonl", "no such file"),
])
def test_a_file_it_cannot_start_on_ends_the_command_in_one_line(
        tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "envoi.txt").write_text("{}\n", encoding="utf-8")
    (tmp_path / "envoi.json").write_text('[\n  {}\n]\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["ingest-file", str(tmp_path / name)])
    assert result.exit_code == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.progress"))
