"""The audit chain proves itself: any record changed, removed or reordered is found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.catalog import Catalog
from schemas.codec import decode, encode
from streams.audit import GENESIS, AuditChains, verify_chain
from streams.contracts import Contract
from streams.routing import ContractTerms, Decision

CATALOG = Catalog.load()
SCHEMA = CATALOG.bus_record("audit").latest.parsed
LYON = Contract.checked(
    yaml.safe_load((Path(__file__).parents[2] / "deploy/contracts/lyon-cantine-2026.yaml")
                   .read_text(encoding="utf-8")), CATALOG)
TERMS = ContractTerms(LYON, "quotient_familial", ("quotient_familial", "annee", "mois"))


def _chain(length: int) -> list[tuple[int, dict[str, Any]]]:
    """Records as a consumer reads them back: written by the chain, through Avro."""
    chains = AuditChains(partitions=3)
    start = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    records = []
    for index in range(length):
        decision = Decision(TERMS, None if index % 2 else "no_consent")
        written = chains.record(1, decision, event_id=f"event-{index}", provider="cnaf",
                                subject_ref="sr1_" + f"{index:02d}" * 32,
                                decided_at=start + timedelta(milliseconds=index))
        records.append((100 + index, decode(SCHEMA, SCHEMA, encode(SCHEMA, written))))
    return records


def test_an_untouched_chain_verifies() -> None:
    records = _chain(6)
    assert records[0][1]["previous_hash"] == GENESIS
    assert verify_chain(1, records) == []


def test_a_changed_record_is_found() -> None:
    records = _chain(6)
    records[3][1]["contract_id"] = "another-contract"
    breaks = verify_chain(1, records)
    assert [b.offset for b in breaks] == [103]
    assert "changed" in breaks[0].reason


@pytest.mark.parametrize("removed", [0, 2, 4])
def test_a_removed_record_is_found(removed: int) -> None:
    # (Removing the newest record leaves nothing after it to break: that needs the signed
    # checkpoints of the chain's head, not built yet.)
    records = _chain(6)
    del records[removed]
    assert [b.offset for b in verify_chain(1, records)] == [100 + removed + 1]


def test_reordered_records_are_found() -> None:
    records = _chain(6)
    records[2], records[3] = records[3], records[2]
    assert {b.offset for b in verify_chain(1, records)} >= {102, 103}
