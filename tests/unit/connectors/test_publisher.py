"""The publisher holds the subject secret and nothing else: a provider's process can turn NIRs
into subject references, never into what a subscriber receives.

These run without a broker (the publisher is never entered) and with an in-memory registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from connectors.publisher import Publisher
from schemas.catalog import Catalog
from schemas.registry import RegistryRefused
from streams.cli import app as cli
from streams.dev.synthetic import generate
from streams.privacy.pseudonyms import Pseudonymiser, SubjectReferences, SubscriberPseudonyms
from streams.privacy.secret import SecretRefused, pseudonym_secret, subject_secret
from streams.settings import Settings, get_settings
from tests.unit.command_settings import strong_secret
from tests.unit.memory_registry import MemoryRegistry
from tests.unit.object_graph import held_by

CATALOG = Catalog.load()
EVENT = next(iter(generate("quotient_familial", 1, 7)))


class Registry(MemoryRegistry):
    """The in-memory registry, taking the compatibility level registration sets."""

    def set_compatibility(self, subject: str, level: str) -> None:
        pass


def _publisher(settings: Settings) -> Publisher:
    return Publisher(settings, CATALOG, Registry())  # type: ignore[arg-type]


def test_an_edge_holding_both_secrets_cannot_compute_a_pseudonym(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path, subject_secret=strong_secret(),
                        pseudonym_secret=strong_secret())
    publisher = _publisher(settings)
    reference = publisher.prepare(EVENT).key.decode()
    delivered = Pseudonymiser(pseudonym_secret(settings)).pseudonym("ville-de-lyon", reference)

    held: list[Any] = list(held_by(publisher))
    assert any(isinstance(each, SubjectReferences) for each in held)
    assert not any(isinstance(each, Pseudonymiser | SubscriberPseudonyms) for each in held)
    # The key it does hold gives no pseudonym a subscriber receives.
    from_the_edge = Pseudonymiser(subject_secret(settings)).pseudonym("ville-de-lyon", reference)
    assert from_the_edge != delivered


def test_a_publisher_needs_only_the_subject_secret(tmp_path: Path) -> None:
    """On a production bus a missing pseudonym secret is refused by whatever reads it: the
    publisher starts, so it never does; nor does it make a development one."""
    settings = Settings(cache_dir=tmp_path, security_protocol="SASL_PLAINTEXT",
                        subject_secret=strong_secret())
    assert _publisher(settings).prepare(EVENT).key.startswith(b"sr1_")
    assert list(tmp_path.iterdir()) == []


def test_a_publisher_without_its_secret_does_not_start(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path, security_protocol="SASL_PLAINTEXT",
                        pseudonym_secret=strong_secret())
    with pytest.raises(SecretRefused) as caught:
        _publisher(settings)
    assert caught.value.setting == "CIRCULATION_SUBJECT_SECRET"


def test_the_publish_command_refuses_a_guessable_secret_in_one_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file
    for name, value in {"CIRCULATION_CACHE_DIR": str(tmp_path),
                        "CIRCULATION_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                        "CIRCULATION_SUBJECT_SECRET": "a" * 32}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["publish", "-"], input="{}\n")
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: CIRCULATION_SUBJECT_SECRET: too guessable")
    assert "a" * 8 not in result.stderr


class ReadOnlyRegistry(Registry):
    """A secured registry as a provider's credential sees it: lookups only (403 otherwise)."""

    def register(self, subject: str, schema: Any) -> int:
        raise RegistryRefused(f"schema registry refused POST /subjects/{subject}/versions: "
                              "HTTP 403 (the credential may not do this)")


def test_a_provider_only_looks_its_schema_up(tmp_path: Path) -> None:
    """Registered by the operator: the event is encoded under the schema's id. Not registered:
    a refusal saying who registers it, and nothing registered by the provider."""
    settings = Settings(cache_dir=tmp_path, subject_secret=strong_secret())
    registry = ReadOnlyRegistry()
    refused = Publisher(settings, CATALOG, registry)  # type: ignore[arg-type]
    with pytest.raises(RegistryRefused, match="circulation schemas register"):
        refused.prepare(EVENT)
    subject = f"provider.{EVENT['source']}.quotient_familial-value"
    latest = CATALOG.dataset("quotient_familial").latest.text
    schema_id = Registry.register(registry, subject, latest)
    prepared = Publisher(settings, CATALOG, registry).prepare(EVENT)  # type: ignore[arg-type]
    assert prepared.value[1:5] == schema_id.to_bytes(4, "big")
