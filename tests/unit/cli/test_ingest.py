"""``circulation ingest-file``: the format comes from ``--format`` or the suffix, and a file the
command cannot start on ends it in one line, before any connection."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors import ingest_progress
from connectors.ingest_progress import IngestProgress
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


@pytest.mark.usefixtures("offline")
def test_a_finished_file_run_again_needs_no_broker_nor_registry(tmp_path: Path) -> None:
    path = tmp_path / "envoi.jsonl"
    path.write_text("{}\n", encoding="utf-8")
    ingest_progress.save(path, IngestProgress(
        sha256=ingest_progress.file_sha256(path), format="jsonl", settled_through=1,
        published=1, finished=True))
    result = CliRunner().invoke(app, ["ingest-file", str(path)])
    assert result.exit_code == 0, result.stderr
    assert "ingested already (1 published, 0 refused): nothing to do" in result.stdout


@pytest.mark.usefixtures("offline")
def test_a_progress_file_of_another_bus_is_not_resumed(tmp_path: Path) -> None:
    """Finished into a staging cluster, the file is not "ingested already" into this one."""
    path = tmp_path / "envoi.jsonl"
    path.write_text("{}\n", encoding="utf-8")
    ingest_progress.save(path, IngestProgress(
        sha256=ingest_progress.file_sha256(path), format="jsonl", settled_through=1,
        published=1, finished=True, destination="staging.example:9093"))
    result = CliRunner().invoke(app, ["ingest-file", str(path)])
    assert result.exit_code == 1
    assert "records ingesting envoi.jsonl as staging.example:9093" in result.stderr
    assert "ingested already" not in result.stdout
    here = ingest_progress.destination(get_settings())
    ingest_progress.save(path, IngestProgress(
        sha256=ingest_progress.file_sha256(path), format="jsonl", settled_through=1,
        published=1, finished=True, destination=here))
    again = CliRunner().invoke(app, ["ingest-file", str(path)])
    assert again.exit_code == 0, again.stderr
    assert "ingested already" in again.stdout


@pytest.mark.usefixtures("offline")
def test_a_run_that_wrote_no_progress_does_not_offer_to_resume_from_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRCULATION_SUBJECT_SECRET", secrets.token_hex(32))
    monkeypatch.setenv("CIRCULATION_SCHEMA_REGISTRY_URL", "http://127.0.0.1:1")
    get_settings.cache_clear()
    path = tmp_path / "envoi.jsonl"
    path.write_text("{}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["ingest-file", str(path)])
    assert result.exit_code == 1
    assert "nothing more could be ingested: " in result.stderr
    assert "resume" not in result.stderr
    assert not ingest_progress.progress_path(path).exists()
