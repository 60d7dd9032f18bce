"""``circulation ingest-file`` on the real broker and registry, read back as any Kafka user would.

Each test runs the command as a provider does, then reads the provider topic between the end
offsets taken before and after, keeping the ids of this run's events (generated from a seed
drawn per run, or derived from this run's file): the topic is shared with the other tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from connectors import ingest_progress
from connectors.file_ingest import derived_id
from connectors.publisher import NIR_REASON
from schemas.catalog import Catalog
from schemas.registration import dataset_subjects, register_versions
from schemas.registry import SchemaRegistry
from streams.dev.synthetic import generate
from tests.conftest import Services
from tests.event_csv import events_csv
from tests.integration.plain_consumer import PlainDecoder, json_form
from tests.integration.test_publish import (
    Offsets,
    event_id_of,
    offsets_of_topics,
    read_between,
    with_defaults,
)

CLI = [sys.executable, "-m", "streams.cli", "ingest-file"]
CATALOG = Catalog.load()
DATASET = "statut_etudiant_boursier"
TOPIC = "provider.cnous.statut_etudiant_boursier"
FIELDS = [f["name"] for f in CATALOG.dataset(DATASET).latest.parsed["fields"]]


@pytest.fixture
def cli_env(services: Services) -> dict[str, str]:
    return {**os.environ, "CIRCULATION_KAFKA_BOOTSTRAP": services.bootstrap,
            "CIRCULATION_SCHEMA_REGISTRY_URL": services.registry_url, "COLUMNS": "200"}


@pytest.fixture(scope="module", autouse=True)
def registered_catalog(services: Services) -> None:
    """The catalog registered first, as an operator does."""
    with SchemaRegistry(services.registry_url) as registry:
        for subject, versions in dataset_subjects(CATALOG):
            register_versions(registry, subject, versions)


@pytest.fixture
def events() -> list[dict[str, Any]]:
    """Events of this run only (a fresh seed), without ids: the ingest derives them."""
    seed = random.SystemRandom().randrange(2**31)
    return [{k: v for k, v in e.items() if k != "id"} for e in generate(DATASET, 30, seed=seed)]


def _offsets(services: Services) -> Offsets:
    return asyncio.run(offsets_of_topics(services.settings(), [TOPIC]))


def _ids_written(services: Services, start: Offsets, wanted: set[str]) -> Counter[str]:
    """How many times each of ``wanted`` is on the topic since ``start``."""
    records = asyncio.run(read_between(services.bootstrap, start, _offsets(services)))
    return Counter(i for i in map(event_id_of, records) if i in wanted)


def _ingest(path: Path, env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, str(path), *options], env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def _jsonl(path: Path, events: list[dict[str, Any]], *more: str) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + "".join(
        f"{line}\n" for line in more), encoding="utf-8")
    return path


def _derived(path: Path, lines: range) -> list[str]:
    sha256 = ingest_progress.file_sha256(path)
    return [derived_id(sha256, n) for n in lines]


def test_valid_lines_are_published_once_and_refused_ones_set_aside_without_a_value_shown(
        services: Services, cli_env: dict[str, str], events: list[dict[str, Any]],
        tmp_path: Path) -> None:
    hidden = {**events[0], "data": {**events[0]["data"], "ville_etudes": events[1]["subject"]}}
    path = _jsonl(tmp_path / "envoi.jsonl", events, json.dumps(hidden), "{not json")
    start = _offsets(services)

    done = _ingest(path, cli_env)

    assert done.returncode == 1, done.stderr
    ids = _derived(path, range(1, len(events) + 1))
    written = _ids_written(services, start, {*ids, *_derived(path, range(31, 33))})
    assert written == Counter(ids)
    rejected = [json.loads(line) for line in
                ingest_progress.rejected_path(path).read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["field"], r["reason"]) for r in rejected] == [
        (31, "data.ville_etudes", NIR_REASON),
        (32, "line", "not JSON (Expecting property name enclosed in double quotes at column 2)")]
    shown = done.stdout + done.stderr
    assert "line 31: data.ville_etudes" in done.stderr
    for event in events:
        assert event["subject"] not in shown
        assert event["data"]["ville_etudes"] not in shown


def test_a_finished_file_run_again_writes_nothing_and_says_so(
        services: Services, cli_env: dict[str, str], events: list[dict[str, Any]],
        tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "envoi.jsonl", events)
    start = _offsets(services)
    assert _ingest(path, cli_env).returncode == 0

    again = _ingest(path, cli_env)

    assert again.returncode == 0, again.stderr
    assert "ingested already (30 published, 0 refused): nothing to do" in again.stdout
    ids = _derived(path, range(1, 31))
    assert _ids_written(services, start, set(ids)) == Counter(ids)


def test_acknowledged_lines_the_progress_missed_are_not_written_twice(
        services: Services, cli_env: dict[str, str], events: list[dict[str, Any]],
        tmp_path: Path) -> None:
    """A crash right after Kafka acknowledged every line, before the progress said so: the
    rerun finds them on the topic, from the offsets recorded before the first write."""
    path = _jsonl(tmp_path / "envoi.jsonl", events)
    start = _offsets(services)
    assert _ingest(path, cli_env).returncode == 0
    recorded = ingest_progress.load(path)
    assert recorded is not None
    ingest_progress.save(path, recorded.model_copy(update={
        "settled_through": 0, "published": 0, "finished": False}))

    again = _ingest(path, cli_env)

    assert again.returncode == 0, again.stderr
    assert re.search(r"published\W+0\b", again.stdout), again.stdout
    assert re.search(r"already written\W+30\b", again.stdout), again.stdout
    ids = _derived(path, range(1, 31))
    assert _ids_written(services, start, set(ids)) == Counter(ids)
    recorded = ingest_progress.load(path)
    assert recorded is not None
    assert (recorded.settled_through, recorded.published, recorded.finished) == (30, 30, True)


def test_a_csv_file_is_published_with_its_cells_typed_by_the_catalog(
        services: Services, cli_env: dict[str, str], events: list[dict[str, Any]],
        tmp_path: Path) -> None:
    path = tmp_path / "envoi.csv"
    path.write_text(events_csv(events, FIELDS), encoding="utf-8")
    start = _offsets(services)

    done = _ingest(path, cli_env)

    assert done.returncode == 0, done.stderr
    ids = _derived(path, range(2, 32))  # line 1 is the header
    records = asyncio.run(read_between(services.bootstrap, start, _offsets(services)))
    by_id = {event_id_of(r): r for r in records if event_id_of(r) in set(ids)}
    assert sorted(by_id) == sorted(ids)
    decoder = PlainDecoder(services.registry_url)
    try:
        for event_id, event in zip(ids, events, strict=True):
            schema_id, datum = decoder.decode(by_id[event_id].value or b"")
            assert json_form(datum) == with_defaults(event["data"], decoder.writer(schema_id)[0])
    finally:
        decoder.close()


def test_killed_mid_file_then_run_again_every_event_is_on_the_topic_exactly_once(
        services: Services, cli_env: dict[str, str], tmp_path: Path) -> None:
    seed = random.SystemRandom().randrange(2**31)
    count = 20_000
    events = [{k: v for k, v in e.items() if k != "id"} for e in generate(DATASET, count, seed)]
    path = _jsonl(tmp_path / "gros-envoi.jsonl", events)
    start = _offsets(services)

    first = subprocess.Popen([*CLI, str(path)], env=cli_env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        settled = _wait_for_acknowledged_lines(path, first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL
    assert 0 < settled < count

    again = _ingest(path, cli_env)

    assert again.returncode == 0, again.stderr
    ids = _derived(path, range(1, count + 1))
    written = _ids_written(services, start, set(ids))
    assert written == Counter(ids)  # every line once, none twice


def _wait_for_acknowledged_lines(path: Path, process: subprocess.Popen[bytes]) -> int:
    """The settled line once the progress shows some, the run still going."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed mid-file"
        try:
            recorded = ingest_progress.load(path)
        except ingest_progress.ProgressUnreadable:
            recorded = None
        if recorded is not None and recorded.settled_through > 0 and not recorded.finished:
            return recorded.settled_through
        time.sleep(0.05)
    raise AssertionError("no line acknowledged within 300 s")
