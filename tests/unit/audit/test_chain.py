"""The audit chain proves itself: any record changed, removed or reordered is found."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from schemas.catalog import Catalog
from schemas.codec import decode, encode
from schemas.projection import field_names, project_schema
from streams.audit.chain import (
    GENESIS,
    HASH_VERSION,
    NO_STATE_CHANGE,
    AuditChains,
    NotARecord,
    deletion_record,
    file_sink_chain,
    hashed_form,
    named_chain,
    record_hash,
    verify_chain,
)
from streams.audit.encoder import AuditEncoder
from streams.audit.state_changes import StateChange, StatePosition, state_change_record
from streams.routing.rules import ContractTerms, Decision
from streams.state.contract import Contract

CATALOG = Catalog.load()
SCHEMA = CATALOG.bus_record("audit").latest.parsed
ENCODER = AuditEncoder(CATALOG.bus_record("audit").latest.raw)
RECORD_HASH_ONLY = fastavro.parse_schema(project_schema(
    CATALOG.bus_record("audit").latest.raw, ["record_hash"], namespace="test", doc="test"))
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
    """Audit records as :meth:`AuditChains.record` and :func:`deletion_record` build them,
    with values drawn from small pools (so that the encoder's memos are hit as well as missed)
    or anything at all."""
    def pooled(pool: list[str]) -> st.SearchStrategy[str]:
        return st.one_of(st.sampled_from(pool), _TEXT)

    decision = draw(st.sampled_from(["delivered", "withheld", "deleted", "recorded"]))
    delivered = decision == "delivered"
    deleted = decision == "deleted"
    recorded = decision == "recorded"

    def state(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(st.one_of(st.none(), strategy)) if recorded else None
    return {
        "event_id": draw(_TEXT),
        "delivery_id": draw(st.one_of(st.none(), _TEXT)) if delivered else None,
        "contract_id": draw(pooled(["lyon-cantine-2026", "cd69-aide"])),
        "subscriber": draw(pooled(["ville-de-lyon", "cd69"])),
        "provider": draw(pooled(["cnaf", "msa"])),
        "dataset": draw(pooled(["quotient_familial"])),
        "subject_ref": draw(_TEXT),
        "file_day": draw(st.dates()) if deleted else None,
        "deliveries_deleted": draw(st.integers(0, 2**63 - 1)) if deleted else None,
        "decision": decision,
        "reason": None if delivered or deleted or recorded else draw(st.sampled_from(
            ["not_enrolled", "no_consent", "objection", "contract_inactive",
             "contract_invalid"])),
        "decided_at": draw(st.datetimes(min_value=datetime(2000, 1, 1),
                                        max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
                           ).replace(microsecond=0),
        "fields_delivered": tuple(draw(st.lists(pooled(["quotient_familial", "annee"]),
                                                max_size=4))) if delivered else (),
        "hash_version": draw(st.one_of(st.just(HASH_VERSION), st.none(),
                                       st.integers(-2**31, 2**31 - 1))),
        "replay": draw(st.one_of(st.none(), st.booleans())),
        "change": state(st.sampled_from(["consent_granted", "consent_withdrawn", "enrolled",
                                         "removed", "contract_applied", "contract_revoked",
                                         "contract_ended"])),
        "erasure_reason": state(st.sampled_from(["consent_withdrawn", "contract_ended",
                                                 "population_removed"])),
        "channel": state(pooled(["portal", "counter"])),
        "principal": state(_TEXT),
        "evidence_ref": state(_TEXT),
        "state_topic": state(pooled(["bus.consents", "bus.population"])),
        "state_partition": state(st.integers(0, 2**31 - 1)),
        "state_offset": state(st.integers(0, 2**63 - 1)),
        "previous_hash": draw(st.one_of(_HASH, _TEXT)),
        "record_hash": draw(st.one_of(_HASH, _TEXT)),
    }


@given(st.lists(_audit_records(), min_size=1, max_size=6))
def test_records_encoded_by_parts_are_fastavros_encoding(records: list[dict[str, Any]]) -> None:
    for record in records:
        whole = encode(SCHEMA, {**record, "fields_delivered": list(record["fields_delivered"])})
        assert ENCODER.encode(record) == whole
        assert whole.startswith(ENCODER.hashed(record))
        assert whole[len(ENCODER.hashed(record)):] == encode(
            RECORD_HASH_ONLY, {"record_hash": record["record_hash"]})
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


# --- The hashed form: unambiguous, versioned, never downgraded. ---

def _decided(**overrides: Any) -> dict[str, Any]:
    """One delivered decision's arguments to :meth:`AuditChains.record`, some overridden."""
    arguments: dict[str, Any] = {
        "event_id": "x", "contract_id": LYON.id, "subscriber": LYON.subscriber,
        "provider": "cnaf", "dataset": TERMS.dataset, "subject_ref": "sr1_" + "ab" * 32,
        "reason": None, "fields_delivered": ("q", "annee"),
        "decided_at": datetime(2026, 11, 28, 10, 0, tzinfo=UTC)}
    return arguments | overrides


@pytest.mark.parametrize(("one", "other"), [
    ({"event_id": "x\x1fA", "contract_id": "B"}, {"event_id": "x", "contract_id": "A\x1fB"}),
    ({"subscriber": "s\x1f", "provider": "p"}, {"subscriber": "s", "provider": "\x1fp"}),
    ({"fields_delivered": ("q", "annee")}, {"fields_delivered": ("q,annee",)}),
    ({"fields_delivered": ()}, {"fields_delivered": ("",)}),
], ids=["separator-across-fields", "separator-at-a-boundary", "comma-in-a-field-name",
        "no-field-or-one-empty-name"])
def test_records_that_differ_never_hash_alike(one: dict[str, Any], other: dict[str, Any]) -> None:
    first = AuditChains().record(0, **_decided(**one))
    second = AuditChains().record(0, **_decided(**other))
    assert first["previous_hash"] == second["previous_hash"] == GENESIS
    assert first["record_hash"] != second["record_hash"]


def test_records_are_written_in_the_current_hashed_form() -> None:
    written = AuditChains().record(0, **_decided())
    assert written["hash_version"] == HASH_VERSION == 5
    assert record_hash(written) == written["record_hash"]


def _avro_hash(version: int, record: dict[str, Any]) -> str:
    """SHA-256 of ``record``'s fields but ``record_hash`` under audit schema ``version``,
    written by plain fastavro from the schema alone, as any auditor's Avro library can."""
    raw = CATALOG.bus_record("audit").version(version).raw
    hashed = [name for name in field_names(raw) if name != "record_hash"]
    schema = fastavro.parse_schema(project_schema(raw, hashed, namespace=raw["namespace"],
                                                  doc="test"))
    content = {name: record[name] for name in hashed} | {
        "fields_delivered": list(record["fields_delivered"])}
    return hashlib.sha256(encode(schema, content)).hexdigest()


@pytest.mark.parametrize("delivery_id", ["3f0c1a52-0d1e-5b7a-9c4e-2f6d8a1b0c3e", None])
def test_the_current_hashed_form_is_the_avro_encoding_of_every_other_field(
        delivery_id: str | None) -> None:
    written = AuditChains().record(0, **_decided(delivery_id=delivery_id))
    assert written["delivery_id"] == delivery_id
    assert _avro_hash(HASH_VERSION, written) == written["record_hash"]


def test_a_delivered_record_names_the_delivery_s_id_and_a_withheld_one_none() -> None:
    chains = AuditChains()
    delivered = chains.record(0, **_decided(delivery_id="d-1"))
    withheld = chains.record(0, **_decided(delivery_id="d-1", reason="no_consent"))
    assert (delivered["delivery_id"], withheld["delivery_id"]) == ("d-1", None)


def test_the_delivery_id_is_covered_by_the_hash() -> None:
    records = _mixed_chain("33")
    records[0][1]["delivery_id"] = "another-delivery"
    assert [b.offset for b in verify_chain(0, records)] == [0]


def _v2_record(previous: str, index: int) -> dict[str, Any]:
    """A record as a writer of form 2 wrote it (audit schema version 2, no ``delivery_id``),
    read back under the current schema, which gives it ``delivery_id`` null."""
    record = {"event_id": f"v2-{index}", "delivery_id": None, "contract_id": LYON.id,
              "subscriber": LYON.subscriber, "provider": "cnaf", "dataset": TERMS.dataset,
              "subject_ref": "sr1_" + "ef" * 32, "file_day": None, "deliveries_deleted": None,
              "decision": "delivered", "reason": None,
              "decided_at": datetime(2026, 11, 2, 9, 0, index, tzinfo=UTC),
              "fields_delivered": ["quotient_familial"], "hash_version": 2, "replay": None,
              **NO_STATE_CHANGE, "previous_hash": previous}
    return record | {"record_hash": _avro_hash(2, record)}


def _v3_record(previous: str, index: int) -> dict[str, Any]:
    """A record as a writer of form 3 wrote it (audit schema version 3, no deletion fields)."""
    record = _v2_record(previous, index) | {"event_id": f"v3-{index}", "delivery_id": "d-3",
                                            "hash_version": 3}
    return record | {"record_hash": _avro_hash(3, record)}


def test_records_written_in_forms_2_and_3_still_verify_and_the_chain_goes_on_in_the_current(
        ) -> None:
    chains = AuditChains()
    read = []
    for index, (version, written_as) in enumerate([(2, _v2_record), (2, _v2_record),
                                                   (3, _v3_record)]):
        old = written_as(chains.heads.get(0, GENESIS), index)
        chains.heads[0] = old["record_hash"]
        schema = CATALOG.bus_record("audit").version(version).parsed
        dropped = ({"file_day", "deliveries_deleted", "replay", *NO_STATE_CHANGE}
                   | ({"delivery_id"} if version == 2 else set()))
        written = encode(schema, {k: v for k, v in old.items() if k not in dropped})
        read.append((index, decode(schema, SCHEMA, written)))
    assert [r["delivery_id"] for _, r in read] == [None, None, "d-3"]
    assert [r["file_day"] for _, r in read] == [None, None, None]
    new = chains.record(0, **_decided(delivery_id="d-4"))
    read.append((3, decode(SCHEMA, SCHEMA, ENCODER.encode(new))))
    assert verify_chain(0, read) == []
    assert [hashed_form(r) for _, r in read] == [2, 2, 3, HASH_VERSION]


def test_records_written_in_form_3_still_verify_and_the_chain_goes_on_in_the_current() -> None:
    """A chain written before replays were audited reads back with ``replay`` null and still
    proves itself; a replay's record after it extends it in the current form."""
    v3 = CATALOG.bus_record("audit").version(3).parsed
    chains = AuditChains()
    old = {**chains.record(0, **_decided(delivery_id="d-1")), "hash_version": 3}
    for later in ("replay", "file_day", "deliveries_deleted", *NO_STATE_CHANGE):
        del old[later]
    old["record_hash"] = chains.heads[0] = _avro_hash(3, old)
    read = [(0, decode(v3, SCHEMA, encode(v3, {**old, "fields_delivered": ["q", "annee"]})))]
    assert read[0][1]["replay"] is None
    new = chains.record(0, **_decided(delivery_id="d-1"), replay=True)
    read.append((1, decode(SCHEMA, SCHEMA, ENCODER.encode(new))))
    assert read[1][1]["replay"] is True
    assert verify_chain(0, read) == []
    assert [hashed_form(r) for _, r in read] == [3, HASH_VERSION]


def test_the_replay_mark_is_covered_by_the_hash() -> None:
    records = _mixed_chain("44")
    records[1][1]["replay"] = True
    assert [b.offset for b in verify_chain(0, records)] == [1]


def _v1_record(previous: str, index: int) -> dict[str, Any]:
    """A record as a writer of the first hashed form wrote it (read back under the current
    schema, which gives it ``hash_version`` null)."""
    record = {"event_id": f"old-{index}", "delivery_id": None, "contract_id": LYON.id,
              "subscriber": LYON.subscriber,
              "provider": "cnaf", "dataset": TERMS.dataset, "subject_ref": "sr1_" + "cd" * 32,
              "file_day": None, "deliveries_deleted": None,
              "decision": "withheld", "reason": "no_consent",
              "decided_at": datetime(2026, 11, 1, 9, 0, index, tzinfo=UTC),
              "fields_delivered": [], "hash_version": None, "replay": None,
              **NO_STATE_CHANGE, "previous_hash": previous}
    return record | {"record_hash": record_hash(record)}


def _mixed_chain(forms: str) -> list[tuple[int, dict[str, Any]]]:
    """A linked chain whose records use the hashed forms ``forms`` names ("1133": two records
    in the first form, then two in the current one), at offsets 0, 1…"""
    chains = AuditChains()
    records = []
    for index, form in enumerate(forms):
        if form == "1":
            record = _v1_record(chains.heads.get(0, GENESIS), index)
            chains.heads[0] = record["record_hash"]
        else:
            record = chains.record(0, **_decided(event_id=f"new-{index}",
                                                 delivery_id=f"delivery-{index}"))
        written = {**record, "fields_delivered": list(record["fields_delivered"])}
        records.append((index, decode(SCHEMA, SCHEMA, encode(SCHEMA, written))))
    return records


def test_a_chain_switches_from_the_first_hashed_form_to_the_current_one() -> None:
    records = _mixed_chain("11133")
    assert [r["hash_version"] for _, r in records] == [None, None, None, HASH_VERSION,
                                                       HASH_VERSION]
    assert verify_chain(0, records) == []


def test_a_record_in_the_first_form_is_read_as_such_under_the_current_schema() -> None:
    v1 = CATALOG.bus_record("audit").version(1).parsed
    old = _v1_record(GENESIS, 0)
    later = ("hash_version", "delivery_id", "file_day", "deliveries_deleted", "replay",
             *NO_STATE_CHANGE)
    written = encode(v1, {k: v for k, v in old.items() if k not in later})
    read = decode(v1, SCHEMA, written)
    assert read["hash_version"] is None
    assert verify_chain(0, [(0, read)]) == []


def test_a_chain_never_switches_back_to_the_first_form() -> None:
    records = _mixed_chain("1131")
    breaks = verify_chain(0, records)
    assert [b.offset for b in breaks] == [3]
    assert f"hashed form 1 after its chain switched to form {HASH_VERSION}" in breaks[0].reason


def test_a_chain_checked_from_a_record_in_the_current_form_refuses_the_first() -> None:
    records = _mixed_chain("1331")
    anchor = records[2][1]
    rest = records[3:]
    assert verify_chain(0, rest, anchor["record_hash"]) == [], "form 1 alone is accepted"
    switched = verify_chain(0, rest, anchor["record_hash"], newest_form=hashed_form(anchor))
    assert [b.offset for b in switched] == [3]


@pytest.mark.parametrize("claimed", [None, 1])
def test_a_record_claiming_the_first_form_for_current_content_is_found(claimed: int | None,
                                                                       ) -> None:
    """A downgrade of one record's claimed form does not verify under either form."""
    records = _mixed_chain("13")
    records[1][1]["hash_version"] = claimed
    assert [b.offset for b in verify_chain(0, records)] == [1]


def test_an_unknown_hashed_form_is_a_break_naming_it() -> None:
    records = _mixed_chain("33")
    records[1][1]["hash_version"] = 7
    (problem,) = verify_chain(0, records)
    unknown = "its hash_version names no hashed form this verifier knows"
    assert (problem.offset, problem.reason) == (1, unknown)
    records[1][1]["hash_version"] = 0
    assert [b.reason for b in verify_chain(0, records)] == [unknown]


def test_offsets_holding_no_audit_record_are_breaks_and_the_chain_links_across_them() -> None:
    records = _mixed_chain("333")
    entries: list[tuple[int, dict[str, Any] | NotARecord]] = [
        records[0], (1, NotARecord("not an audit record: its value cannot be decoded")),
        (2, NotARecord("an empty value (a tombstone)")), (3, records[1][1]), (4, records[2][1])]
    breaks = verify_chain(0, entries)
    assert [(b.offset, b.reason) for b in breaks] == [
        (1, "not an audit record: its value cannot be decoded"),
        (2, "an empty value (a tombstone)")]
    assert str(breaks[0]) == ("audit partition 0, offset 1: not an audit record: its value "
                              "cannot be decoded")


def test_a_chain_checked_after_an_unreadable_anchor_checks_its_first_link_no_more() -> None:
    records = _mixed_chain("333")
    assert verify_chain(0, records[1:], previous=None) == []
    records[1][1]["event_id"] = "changed"
    assert [b.offset for b in verify_chain(0, records[1:], previous=None)] == [1]


# --- A file sink's deletions: a chain of their own, keyed sink.files.<contract>. ---

def _deletions(count: int) -> list[tuple[int, dict[str, Any]]]:
    """A file sink's chain of ``count`` deletions, as read back, at offsets 10, 20…"""
    previous = GENESIS
    read = []
    for index in range(count):
        written = deletion_record(previous, contract_id=LYON.id, subscriber=LYON.subscriber,
                                  day=date(2026, 11, 1 + index), deliveries=10 + index,
                                  deleted_at=datetime(2026, 12, 1, 3, 0, index, tzinfo=UTC))
        previous = written["record_hash"]
        read.append((10 * (index + 1), decode(SCHEMA, SCHEMA, ENCODER.encode(written))))
    return read


def test_a_deletion_names_the_contract_day_and_count_and_no_person() -> None:
    (_, read), = _deletions(1)
    assert (read["decision"], read["contract_id"], read["file_day"],
            read["deliveries_deleted"]) == ("deleted", LYON.id, date(2026, 11, 1), 10)
    assert read["event_id"] == f"{LYON.id}/2026-11-01.jsonl"
    assert (read["subject_ref"], read["provider"], read["dataset"], read["delivery_id"]) == (
        "", "", "", None)
    assert read["hash_version"] == HASH_VERSION
    assert _avro_hash(HASH_VERSION, read) == read["record_hash"]


def test_a_sink_s_chain_verifies_and_its_day_and_count_are_covered_by_the_hash() -> None:
    chain = file_sink_chain(LYON.id)
    records = _deletions(3)
    assert verify_chain(0, records, chain=chain) == []
    records[1][1]["deliveries_deleted"] = 0
    records[2][1]["file_day"] = date(2026, 1, 1)
    breaks = verify_chain(0, records, chain=chain)
    assert [b.offset for b in breaks] == [20, 30]
    assert str(breaks[0]).startswith(f"audit chain {chain} (audit partition 0, offset 20): ")


def test_a_record_keyed_into_another_chain_than_its_content_s_is_a_break() -> None:
    deletions = _deletions(1)
    assert [b.offset for b in verify_chain(0, deletions)] == [10], "a deletion in routing"
    other = file_sink_chain("another-contract")
    assert [b.offset for b in verify_chain(0, deletions, chain=other)] == [10]
    decisions = _mixed_chain("3")
    (problem,) = verify_chain(0, decisions, chain=file_sink_chain(LYON.id))
    assert "belongs to another chain" in problem.reason


def test_a_key_names_a_sink_s_chain_and_nothing_else() -> None:
    assert named_chain(b"sink.files.lyon-cantine-2026") == "sink.files.lyon-cantine-2026"
    assert file_sink_chain("lyon-cantine-2026") == "sink.files.lyon-cantine-2026"
    for routing in (b"sr1_" + b"ab" * 32, b"732829320", None):
        assert named_chain(routing) is None


def test_a_record_that_its_own_form_cannot_hold_is_a_break_not_a_crash() -> None:
    """A deletion claiming a form older than deletions: what a writer of bus.audit other than
    the bus could put there. The verifier reports it and goes on."""
    records = _mixed_chain("44")
    records[1][1]["decision"] = "deleted"
    records[1][1]["hash_version"] = 3
    problems = verify_chain(0, records)
    assert {p.offset for p in problems} == {1}
    assert any("cannot be written in the hashed form it names" in p.reason for p in problems)


def test_a_state_change_links_into_the_routing_chain_and_is_covered_by_the_hash() -> None:
    chains = AuditChains()
    routed = chains.record(0, **_decided())
    change = StateChange("removed", LYON.id, LYON.subscriber,
                         datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
                         StatePosition("bus.population", 0, 41), "sr1_" + "ab" * 32,
                         erasure_reason="population_removed", notice_id="n-1")
    recorded = state_change_record(chains, 0, change)
    assert (recorded["decision"], recorded["event_id"], recorded["state_offset"]) == (
        "recorded", "bus.population/0/41", 41)
    assert change.key == b"state.bus.population.0"
    assert named_chain(change.key) is None, "in the partition's routing chain"
    read = [(offset, decode(SCHEMA, SCHEMA, ENCODER.encode(record)))
            for offset, record in enumerate((routed, recorded))]
    assert verify_chain(0, read) == []
    read[1][1]["state_offset"] = 42
    assert [b.offset for b in verify_chain(0, read)] == [1]
