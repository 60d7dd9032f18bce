"""``circulation schemas register`` on the real registry: complete, idempotent, and enforced.

The catalog's subjects are shared with every other run, so the checks on them only read; the
refusal of an incompatible schema is shown on a subject of this test's own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.publisher import Publisher
from schemas.catalog import Catalog, SchemaVersion
from schemas.registration import COMPATIBILITY, dataset_subjects, register_versions, value_subject
from schemas.registry import RegistryError, SchemaRegistry
from streams.dev.synthetic import generate
from streams.kafka.topics import BUS_RECORD_TOPICS
from tests.conftest import Services

CLI = [sys.executable, "-m", "streams.cli"]
CATALOG = Catalog.load()
BOURSIER = CATALOG.dataset("statut_etudiant_boursier")

Snapshot = dict[str, dict[int, int]]


def _expected_subjects() -> dict[str, dict[int, SchemaVersion]]:
    subjects = {subject: dict(versions) for subject, versions in dataset_subjects(CATALOG)}
    for name, topic in BUS_RECORD_TOPICS.items():
        subjects[value_subject(topic)] = dict(CATALOG.bus_record(name).versions)
    return subjects


EXPECTED = _expected_subjects()


def _register(services: Services) -> dict[str, list[int]]:
    """Run the command; return the schema ids it printed for each subject."""
    env = {**os.environ, "CIRCULATION_SCHEMA_REGISTRY_URL": services.registry_url,
           "CIRCULATION_KAFKA_BOOTSTRAP": services.bootstrap, "COLUMNS": "300"}
    run = subprocess.run([*CLI, "schemas", "register"], env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    printed: dict[str, list[int]] = {}
    for line in run.stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│|┃]", line) if c.strip()]
        if len(cells) == 3 and cells[0] in EXPECTED:
            printed[cells[0]] = [int(i) for i in cells[2].split(",")]
    assert set(printed) == set(EXPECTED), run.stdout
    return printed


def _snapshot(services: Services) -> tuple[Snapshot, dict[str, dict[int, Any]]]:
    """For every catalog subject: {registry version: schema id} and the schemas themselves."""
    ids: Snapshot = {}
    schemas: dict[str, dict[int, Any]] = {}
    with httpx.Client(base_url=services.registry_url, timeout=10) as http:
        for subject in EXPECTED:
            versions = http.get(f"/subjects/{subject}/versions").raise_for_status().json()
            ids[subject], schemas[subject] = {}, {}
            for version in versions:
                answer = http.get(f"/subjects/{subject}/versions/{version}").raise_for_status()
                ids[subject][int(version)] = int(answer.json()["id"])
                schemas[subject][int(version)] = json.loads(answer.json()["schema"])
    return ids, schemas


def test_register_is_complete_and_idempotent(services: Services) -> None:
    first = _register(services)
    ids_after_first, schemas = _snapshot(services)
    second = _register(services)
    ids_after_second, _ = _snapshot(services)

    assert second == first, "a second run must give the same ids"
    assert ids_after_second == ids_after_first, "a second run must not add versions"
    for subject, versions in EXPECTED.items():
        # Every catalog version, in order, as registry versions 1..N, with the ids printed.
        assert sorted(ids_after_first[subject]) == sorted(versions), subject
        assert [ids_after_first[subject][v] for v in sorted(versions)] == first[subject]
        for number, version in versions.items():
            assert schemas[subject][number] == version.raw, f"{subject} v{number}"
        assert len(set(first[subject])) == len(versions), "distinct versions, distinct ids"
    # Versions of the same dataset under two providers' subjects are the same schema.
    assert first["provider.cnaf.quotient_familial-value"] == \
        first["provider.msa.quotient_familial-value"]

    with SchemaRegistry(services.registry_url) as registry:
        for subject in EXPECTED:
            assert registry.compatibility(subject) == "BACKWARD_TRANSITIVE", subject


def _with_required_field(version: SchemaVersion) -> dict[str, Any]:
    schema = version.raw
    schema["fields"].append({"name": "nouveau_champ", "type": "string",
                             "doc": "A new field without a default: old records lack it."})
    return schema


def _without_default(version: SchemaVersion, field: str) -> dict[str, Any]:
    schema = version.raw
    (target,) = (f for f in schema["fields"] if f["name"] == field)
    del target["default"]
    return schema


def test_registry_refuses_an_incompatible_schema(services: Services, topic_name: str) -> None:
    subject = f"{topic_name}-value"
    with SchemaRegistry(services.registry_url) as registry:
        first = registry.register(subject, BOURSIER.version(1).text)
        registry.set_compatibility(subject, "BACKWARD_TRANSITIVE")
        assert registry.compatibility(subject) == "BACKWARD_TRANSITIVE"

        with pytest.raises(RegistryError) as refused:
            registry.register(subject, _with_required_field(BOURSIER.version(1)))
        assert "HTTP 409" in str(refused.value)
        assert "nouveau_champ" in str(refused.value), "the registry names the culprit field"
        assert registry.versions(subject) == [1], "nothing registered on refusal"

        # A compatible evolution (a nullable field with a default) is accepted.
        second = registry.register(subject, BOURSIER.version(2).text)
        assert second != first
        assert registry.versions(subject) == [1, 2]
        assert registry.register(subject, BOURSIER.version(1).text) == first, "idempotent"
        assert registry.versions(subject) == [1, 2]


def test_compatibility_is_transitive(services: Services, topic_name: str) -> None:
    """A v3 that reads v2 but not v1 passes BACKWARD and is refused by BACKWARD_TRANSITIVE."""
    v3 = _without_default(BOURSIER.version(2), "montant_annuel_centimes")
    transitive, plain = f"{topic_name}-value", f"{topic_name}.backward-value"
    with SchemaRegistry(services.registry_url) as registry:
        done = register_versions(registry, transitive, BOURSIER.versions)
        assert [(r.subject, r.version) for r in done] == [(transitive, 1), (transitive, 2)]
        assert registry.compatibility(transitive) == COMPATIBILITY == "BACKWARD_TRANSITIVE"
        assert register_versions(registry, transitive, BOURSIER.versions) == done
        with pytest.raises(RegistryError) as refused:
            registry.register(transitive, v3)
        assert "HTTP 409" in str(refused.value)
        assert registry.versions(transitive) == [1, 2]

        # The same v3 under plain BACKWARD is accepted: the refusal above is the transitive rule.
        for version in (1, 2):
            registry.register(plain, BOURSIER.version(version).text)
            if version == 1:
                registry.set_compatibility(plain, "BACKWARD")
        registry.register(plain, v3)
        assert registry.versions(plain) == [1, 2, 3]


async def test_publishing_before_registration_keeps_version_order(
    services: Services, tmp_path: Path
) -> None:
    """``publish`` before ``schemas register`` on a fresh subject must still end in v1, v2.

    A catalog of one dataset under a provider id of this test's own gives a fresh subject
    through the real ``Publisher`` (which always writes to the catalog topic).
    """
    provider = f"test_{uuid.uuid4().hex[:10]}"
    folder = tmp_path / "catalog" / provider
    folder.mkdir(parents=True)
    for number, version in BOURSIER.versions.items():
        raw = version.raw
        raw["circulation"]["providers"] = [provider]
        (folder / f"{BOURSIER.id}.v{number}.avsc").write_text(json.dumps(raw), encoding="utf-8")
    catalog = Catalog.load(tmp_path / "catalog")
    subject = value_subject(catalog.topic_for(provider, BOURSIER.id))
    settings = services.settings()
    event = {**next(iter(generate(BOURSIER.id, 1, 5))), "source": provider}

    try:
        Publisher(settings, catalog=catalog).prepare(event)  # what `publish` does first
        with SchemaRegistry(services.registry_url) as registry:
            register_versions(registry, subject, catalog.dataset(BOURSIER.id).versions)
            assert registry.compatibility(subject) == "BACKWARD_TRANSITIVE"
        with httpx.Client(base_url=services.registry_url, timeout=10) as http:
            latest = http.get(f"/subjects/{subject}/versions/latest").raise_for_status().json()
            first = http.get(f"/subjects/{subject}/versions/1").raise_for_status().json()
        assert json.loads(first["schema"])["circulation"]["version"] == 1
        assert json.loads(latest["schema"])["circulation"]["version"] == BOURSIER.latest.version
    finally:  # a provider.* subject of a provider that does not exist: leave no trace
        with httpx.Client(base_url=services.registry_url, timeout=10) as http:
            http.delete(f"/subjects/{subject}")
            http.delete(f"/subjects/{subject}", params={"permanent": "true"})
