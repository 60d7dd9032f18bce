"""Consent records: the texts an operator types about a consent never carry a NIR."""

from __future__ import annotations

import secrets

import pytest
from pydantic import SecretStr

from schemas.catalog import Catalog
from schemas.nir_detection import contains_nir
from schemas.serde import AvroSerde
from streams.settings import Settings
from streams.state.ledger import ConsentRefused, SubjectLedger
from tests.unit.memory_registry import MemoryRegistry

NIR = "184127645108946"
REFERENCE = "sr1_" + "ab" * 32


@pytest.mark.parametrize(("collected_by", "evidence_ref", "field"), [
    ("21690123100011", f"formulaire {NIR}", "evidence_ref"),
    ("21690123100011", "dossier-1 84 12 76 451 089", "evidence_ref"),
    (NIR, None, "collected_by"),
    ("guichet 1.84.12.76.451.089.46", "ok", "collected_by"),
])
async def test_a_nir_in_a_consent_text_is_refused_before_anything_is_written(
        tmp_path: object, collected_by: str, evidence_ref: str | None, field: str) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", subject_secret=SecretStr(
        secrets.token_hex(32)))
    ledger = SubjectLedger(settings, AvroSerde(MemoryRegistry()),  # type: ignore[arg-type]
                           Catalog.load())
    with pytest.raises(ConsentRefused) as refused:
        await ledger.record_consent("lyon-cantine", [REFERENCE], "granted", collected_by,
                                    "counter", evidence_ref)
    assert refused.value.field == field
    assert not contains_nir(str(refused.value))
