"""State records that cannot be folded are logged without the values they hold.

A record on a state topic is written by a command, but anyone with write access to the topic
may write anything: a NIR in a field of the wrong type or shape must not reach a log line
through the error message of pydantic or of the Avro reader, both of which quote the input.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import fastavro
import pytest
import structlog

from schemas.catalog import Catalog
from schemas.codec import encode, from_json
from schemas.identifiers import complete_nir
from schemas.nir_detection import contains_nir
from schemas.serde import AvroSerde
from streams.kafka.topics import BUS_RECORD_TOPICS
from streams.settings import Settings
from streams.state.contract_store import ContractStore
from streams.state.directory import MemoryDirectory
from streams.state.follower import StateFollower
from tests.unit.memory_registry import MemoryRegistry

CATALOG = Catalog.load()
NIR = complete_nir("1841276451089")
SETTINGS = Settings()

CONTRACT: dict[str, Any] = {
    "id": f"dossier_{NIR}", "subscriber": "ville-de-lyon", "subscriber_siret": "21690123100011",
    "purpose": "Cantine", "legal_basis": "CRPA", "datasets": {"quotient_familial": ["annee"]},
    "consent": "opt_in", "population": "enrolled", "retention": "P90D",
    "valid_from": "2026-01-01", "valid_until": None, "revoked": False, "revoked_at": None,
}


def _contract_value(serde: AvroSerde) -> bytes:
    schema = CATALOG.bus_record("contract").latest
    return serde.framed("bus.contracts-value", schema,
                        encode(schema.parsed, from_json(schema.parsed, CONTRACT)))


class _Writer:
    """A writer schema of its own (what a careless or hostile producer registered)."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.text = json.dumps(raw)
        self.parsed: Any = fastavro.parse_schema(copy.deepcopy(raw))


def _with_field(record: str, field: str, field_type: Any) -> _Writer:
    """The bus record ``record``'s schema with ``field`` given another type."""
    raw = copy.deepcopy(CATALOG.bus_record(record).latest.raw)
    for each in raw["fields"]:
        if each["name"] == field:
            each["type"] = field_type
    return _Writer(raw)


def _consent_value(serde: AvroSerde) -> bytes:
    """A consent whose status is a symbol the reader does not know: a NIR-bearing one."""
    writer = _with_field("consent", "status", {"type": "enum", "name": "ConsentStatus",
                                               "symbols": ["granted", f"_{NIR}"]})
    datum = {"contract_id": "lyon-cantine-2026", "subject_ref": "sr1_" + "0" * 64,
             "status": f"_{NIR}", "recorded_at": 0, "collected_by": "21690123100011",
             "channel": "counter", "evidence_ref": None}
    return serde.framed("bus.consents-value", writer, encode(writer.parsed, datum))


def _population_value(serde: AvroSerde) -> bytes:
    """A population record whose contract id was written as an enum naming a NIR."""
    writer = _with_field("population", "contract_id",
                         {"type": "enum", "name": "ContractId", "symbols": [f"_{NIR}"]})
    datum = {"contract_id": f"_{NIR}", "subject_ref": "sr1_" + "0" * 64, "enrolled": True,
             "recorded_at": 0}
    return serde.framed("bus.population-value", writer, encode(writer.parsed, datum))


def _assert_logged_without_nir(logs: list[dict[str, Any]]) -> None:
    assert logs, "the skipped record must be logged"
    for entry in logs:
        text = repr(entry)
        assert NIR not in text, entry
        assert NIR[:13] not in text, entry
        assert not contains_nir(text.encode()), entry


@pytest.mark.parametrize(("record", "value"), [
    ("contract", _contract_value),
    ("consent", _consent_value),
    ("population", _population_value),
])
def test_the_follower_logs_a_bad_state_record_without_its_values(record: str,
                                                                 value: Any) -> None:
    serde = AvroSerde(MemoryRegistry())  # type: ignore[arg-type]
    follower = StateFollower(SETTINGS, serde, CATALOG)
    with structlog.testing.capture_logs() as logs:
        follower._apply(BUS_RECORD_TOPICS[record], b"key", value(serde))
    _assert_logged_without_nir(logs)
    assert follower.state.contracts == {}
    assert isinstance(follower.state.directory, MemoryDirectory)
    assert follower.state.directory.files == {}


def test_the_follower_logs_where_a_contract_record_is_wrong() -> None:
    serde = AvroSerde(MemoryRegistry())  # type: ignore[arg-type]
    follower = StateFollower(SETTINGS, serde, CATALOG)
    with structlog.testing.capture_logs() as logs:
        follower._apply(BUS_RECORD_TOPICS["contract"], b"key", _contract_value(serde),
                        partition=0, offset=12)
    (entry,) = logs
    assert str(entry["error"]).startswith("id: ")
    assert "must be 3 to 64 lower-case letters" in str(entry["error"])
    assert entry["offset"] == 12


def test_the_contract_store_logs_a_bad_contract_record_without_its_values() -> None:
    registry = MemoryRegistry()
    store = ContractStore(SETTINGS, registry, CATALOG)  # type: ignore[arg-type]
    found: dict[str, Any] = {}
    with structlog.testing.capture_logs() as logs:
        store._fold(found, b"key", _contract_value(AvroSerde(registry)),  # type: ignore[arg-type]
                    offset=7)
    _assert_logged_without_nir(logs)
    assert found == {}
    assert logs[0]["offset"] == 7
    assert str(logs[0]["error"]).startswith("id: ")
