"""Consent and population records: the texts an operator types about a consent never carry a
NIR; a whole file of records is told as acknowledged and fenced once."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from aiokafka.structs import RecordMetadata, TopicPartition
from pydantic import SecretStr

from schemas.catalog import Catalog
from schemas.nir_detection import contains_nir
from schemas.serde import AvroSerde
from streams.kafka.topics import CONSENTS, POPULATION
from streams.settings import Settings
from streams.state import ledger as ledger_module
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


class AcknowledgingProducer:
    """Acknowledges each record soon after it is sent, at offsets counted per partition."""

    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(3))

    async def send(self, topic: str, value: bytes, key: bytes, partition: int,
                   ) -> asyncio.Future[RecordMetadata]:
        offset = self.offsets.get(partition, 0)
        self.offsets[partition] = offset + 1
        sent: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(sent.set_result, RecordMetadata(
            topic, partition, TopicPartition(topic, partition), offset, -1, 0, 0))
        return sent


@pytest.mark.parametrize("consent", [False, True])
async def test_a_whole_file_of_records_is_told_as_acknowledged_then_fenced_once(
        monkeypatch: pytest.MonkeyPatch, consent: bool) -> None:
    """30,000 records: each acknowledgement told to the progress bar, one fence round after the
    last, naming every partition's end, and the write returns only once it stands."""
    references = [f"sr1_{n:064x}" for n in range(30_000)]
    told: list[int] = []
    fences: list[tuple[dict[TopicPartition, int], int]] = []

    async def raise_fences(settings: object, producer: object,
                           positions: dict[TopicPartition, int]) -> int:
        fences.append((positions, sum(told)))
        return 1

    producer = AcknowledgingProducer()
    monkeypatch.setattr(ledger_module, "raise_fences", raise_fences)
    monkeypatch.setattr(ledger_module.clients, "producer", lambda settings: producer)
    ledger = SubjectLedger(Settings(), AvroSerde(MemoryRegistry()),  # type: ignore[arg-type]
                           Catalog.load())
    if consent:
        written = await ledger.record_consent("lyon-cantine", references, "granted",
                                              "21690123100011", "counter", None, told.append)
        topic = CONSENTS
    else:
        written = await ledger.record_population("lyon-cantine", references, True, told.append)
        topic = POPULATION
    assert written == sum(told) == len(references)
    assert fences == [({TopicPartition(topic, p): end for p, end in producer.offsets.items()},
                       len(references))]
