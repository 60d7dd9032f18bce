"""The audit chain proves itself: any record changed, removed or reordered is found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from schemas.catalog import Catalog
from schemas.codec import decode, encode
from streams.audit.chain import GENESIS, AuditChains, verify_chain
from streams.audit.encoder import AuditEncoder
from streams.routing.rules import ContractTerms, Decision
from streams.state.contract import Contract

CATALOG = Catalog.load()
SCHEMA = CATALOG.bus_record("audit").latest.parsed
ENCODER = AuditEncoder(CATALOG.bus_record("audit").latest.raw)
"""One encoder for every test below, as in a worker: its memos carry over from record to
record, and each record must still come out as fastavro writes it whole."""
LYON = Contract.checked(
    yaml.safe_load((Path(__file__).parents[3] / "deploy/contracts/lyon-cantine-2026.yaml")
                   .read_text(encoding="utf-8")), CATALOG)
TERMS = ContractTerms(LYON, "quotient_familial", ("quotient_familial", "annee", "mois"))


def _chain(length: int) -> list[tuple[int, dict[str, Any]]]:
    """Records as a consumer reads them back: written by the chain, through Avro."""
    chains = AuditChains(partitions=3)
    start = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    records = []
    for index in range(length):
        decision = Decision(TERMS, None if index % 2 else "no_consent")
        written = chains.record(
            1, event_id=f"event-{index}", contract_id=LYON.id, subscriber=LYON.subscriber,
            provider="cnaf", dataset=TERMS.dataset, subject_ref="sr1_" + f"{index:02d}" * 32,
            reason=decision.reason, fields_delivered=TERMS.fields,
            decided_at=start + timedelta(milliseconds=index))
        records.append((100 + index, decode(SCHEMA, SCHEMA, ENCODER.encode(written))))
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


_TEXT = st.text(max_size=80)
_HASH = st.text("0123456789abcdef", min_size=64, max_size=64)


@st.composite
def _audit_records(draw: st.DrawFn) -> dict[str, Any]:
    """Audit records as :meth:`AuditChains.record` builds them, with values drawn from small
    pools (so that the encoder's memos are hit as well as missed) or anything at all."""
    def pooled(pool: list[str]) -> st.SearchStrategy[str]:
        return st.one_of(st.sampled_from(pool), _TEXT)

    delivered = draw(st.booleans())
    return {
        "event_id": draw(_TEXT),
        "contract_id": draw(pooled(["lyon-cantine-2026", "cd69-aide"])),
        "subscriber": draw(pooled(["ville-de-lyon", "cd69"])),
        "provider": draw(pooled(["cnaf", "msa"])),
        "dataset": draw(pooled(["quotient_familial"])),
        "subject_ref": draw(_TEXT),
        "decision": "delivered" if delivered else "withheld",
        "reason": None if delivered else draw(st.sampled_from(
            ["not_enrolled", "no_consent", "objection", "contract_inactive"])),
        "decided_at": draw(st.datetimes(min_value=datetime(2000, 1, 1),
                                        max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
                           ).replace(microsecond=0),
        "fields_delivered": tuple(draw(st.lists(pooled(["quotient_familial", "annee"]),
                                                max_size=4))) if delivered else (),
        "previous_hash": draw(st.one_of(_HASH, _TEXT)),
        "record_hash": draw(st.one_of(_HASH, _TEXT)),
    }


@given(st.lists(_audit_records(), min_size=1, max_size=6))
def test_records_encoded_by_parts_are_fastavros_encoding(records: list[dict[str, Any]]) -> None:
    for record in records:
        whole = encode(SCHEMA, {**record, "fields_delivered": list(record["fields_delivered"])})
        assert ENCODER.encode(record) == whole
        assert decode(SCHEMA, SCHEMA, ENCODER.encode(record))["record_hash"] == \
            record["record_hash"]


def test_an_audit_schema_with_other_fields_is_refused() -> None:
    raw = CATALOG.bus_record("audit").latest.raw
    raw["fields"][0], raw["fields"][1] = raw["fields"][1], raw["fields"][0]
    with pytest.raises(ValueError, match="not the ones AuditEncoder writes"):
        AuditEncoder(raw)


def test_a_chain_checked_from_the_middle_links_to_the_record_before() -> None:
    records = _chain(6)
    assert verify_chain(1, records[3:], previous=records[2][1]["record_hash"]) == []
    forked = verify_chain(1, records[3:], previous=records[1][1]["record_hash"])
    assert [b.offset for b in forked] == [103]
    assert "does not link" in forked[0].reason
