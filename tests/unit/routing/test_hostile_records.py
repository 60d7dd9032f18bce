"""Records a careless or hostile writer of a provider topic could produce, and what the router
does with each: a dead letter naming what is wrong (never a value) that copies nothing of the
record, while every other record and contract keeps routing.

- headers that lie about the record's provider or dataset (item 3), a subject of the wrong kind
  for the dataset (item 4), null, repeated or undecodable headers, header names that are not
  UTF-8 (item 8);
- a recorded contract that no longer compiles against the catalog: audited ``contract_invalid``
  while the others deliver (item 8);
- dead letters that keep no key, value or header value, whatever spelling a NIR hides in (item 2);
- thousands of generated hostile records (``tests/hostile_records.py``), of every dataset: each
  one dead letter naming a field or the value, copying nothing, and the record after it routed.
"""

from __future__ import annotations

import random
import struct
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import encode, frame
from schemas.identifiers import complete_nir
from schemas.nir_detection import contains_nir
from schemas.serde import AvroSerde
from streams.kafka.topics import AUDIT, DLQ
from streams.privacy.pseudonyms import Pseudonymiser
from streams.routing.records import Outgoing, SourceRecord
from streams.routing.router import Router
from streams.state.bus_state import BusState
from streams.state.contract import Contract
from tests import hostile_inputs
from tests.hostile_records import HostileRecords, ProviderRecord, Valid
from tests.unit.memory_registry import MemoryRegistry
from tests.unit.routing.test_rules import CATALOG, NOW, SECRET, SIRET, _record

PERSON = "sr1_" + "cd" * 32
SIREN = "356000000"
NIR = complete_nir("1841276451089")


def _contract(contract_id: str, datasets: dict[str, list[str]], *,
              checked: bool = True) -> Contract:
    data = {"id": contract_id, "subscriber": f"sub-{contract_id}", "subscriber_siret": SIRET,
            "purpose": "Tarification sociale", "legal_basis": "Essai", "datasets": datasets,
            "consent": "not_required", "population": "all", "retention": "P90D",
            "valid_from": "2026-01-01"}
    # Unchecked: a contract recorded when the catalog still had what it names.
    return Contract.checked(data, CATALOG) if checked else Contract.model_validate(data)


@pytest.fixture
def serde() -> AvroSerde:
    return AvroSerde(MemoryRegistry())  # type: ignore[arg-type]


@pytest.fixture
def router(serde: AvroSerde) -> Router:
    return Router(CATALOG, serde, Pseudonymiser(SECRET))


def _state(*contracts: Contract) -> BusState:
    state = BusState()
    for contract in contracts:
        state.contracts[contract.id] = contract
    state.generation = 1
    return state


def _headers(record: SourceRecord, **changes: bytes | None) -> SourceRecord:
    """``record`` with its headers changed (a None value makes a null header)."""
    headers = [(name, changes.get(name, value)) for name, value in record.headers]
    return SourceRecord(record.topic, record.partition, record.offset, record.timestamp_ms,
                        record.key, record.value, headers)


def _letters(serde: AvroSerde, out: list[Outgoing]) -> list[dict[str, Any]]:
    return [serde.decode(o.value)[1] for o in out if o.topic == DLQ]


def _delivered(out: list[Outgoing]) -> list[Outgoing]:
    return [o for o in out if o.topic.startswith("deliver.")]


@pytest.mark.parametrize(("header", "value", "field"), [
    ("ce_source", b"dgfip", "ce_source"),
    ("ce_type", b"attestation_fiscale", "ce_type"),
    ("ce_id", None, "ce_id"),
    ("ce_subject", None, "ce_subject"),
    ("ce_time", None, "ce_time"),
    ("ce_specversion", b"0.3", "ce_specversion"),
    ("ce_id", b"\xff\xfe not utf-8", "ce_id"),
    ("ce_id", f"dossier-{NIR}".encode(), "ce_id"),
    ("ce_id", b"x" * 65, "ce_id"),
    ("ce_time", b"yesterday", "ce_time"),
    ("ce_time", b"2026-11-28T12:00:00", "ce_time"),
], ids=["other-source", "other-type", "null-id", "null-subject", "null-time", "old-spec",
        "id-not-utf8", "nir-in-id", "long-id", "time-not-rfc3339", "time-without-zone"])
def test_a_record_with_a_bad_header_is_a_dead_letter_and_the_next_is_routed(
        router: Router, serde: AvroSerde, header: str, value: bytes | None, field: str) -> None:
    contract = _contract("lyon", {"quotient_familial": ["quotient_familial"]})
    bad, _ = _record(serde, "quotient_familial", PERSON, 1, 0)
    good, _ = _record(serde, "quotient_familial", PERSON, 2, 1)
    out = router.route([_headers(bad, **{header: value}), good], _state(contract), now=NOW)
    (letter,) = _letters(serde, out)
    assert letter["field"] == field
    assert letter["origin_offset"] == 0
    assert letter["error"].startswith(f"UnroutableRecord: {field}: ")
    assert len(_delivered(out)) == 1, "the next record was not routed"


def test_a_header_given_twice_is_a_dead_letter(router: Router, serde: AvroSerde) -> None:
    """Which of two ``ce_subject`` would a subscriber's library read? Neither is trusted."""
    contract = _contract("lyon", {"quotient_familial": ["quotient_familial"]})
    record, _ = _record(serde, "quotient_familial", PERSON, 1, 0)
    forged = SourceRecord(record.topic, 0, 0, None, record.key, record.value,
                          [*record.headers, ("ce_subject", ("sr1_" + "ef" * 32).encode())])
    out = router.route([forged], _state(contract), now=NOW)
    (letter,) = _letters(serde, out)
    assert letter["field"] == "ce_subject"
    assert "more than once" in letter["error"]


@pytest.mark.parametrize("name", [b"note\xff\xfe", b"ce_\xe9", b"\xc3"])
def test_a_header_name_that_is_not_utf8_is_a_dead_letter_and_the_next_is_routed(
        router: Router, serde: AvroSerde, name: bytes) -> None:
    """As the bus's consumers read it (``streams.kafka.record_reader``): escaped, never clean
    text, so no header the router reads could be spelled that way and be taken for one."""
    contract = _contract("lyon", {"quotient_familial": ["quotient_familial"]})
    record, _ = _record(serde, "quotient_familial", PERSON, 1, 0)
    good, _ = _record(serde, "quotient_familial", PERSON, 2, 1)
    escaped = SourceRecord(record.topic, 0, 0, None, record.key, record.value,
                           [*record.headers, (name.decode("utf-8", "surrogateescape"), b"x")])
    out = router.route([escaped, good], _state(contract), now=NOW)
    (letter,) = _letters(serde, out)
    assert letter["field"] == "headers"
    assert letter["error"] == "UnroutableRecord: headers: a header name is not UTF-8 text"
    assert letter["header_names"][-1] == "other"
    assert len(_delivered(out)) == 1, "the next record was not routed"


def test_an_unknown_null_header_is_ignored(router: Router, serde: AvroSerde) -> None:
    contract = _contract("lyon", {"quotient_familial": ["quotient_familial"]})
    record, _ = _record(serde, "quotient_familial", PERSON, 1, 0)
    with_null = SourceRecord(record.topic, 0, 0, None, record.key, record.value,
                             [*record.headers, ("traceparent", None)])
    out = router.route([with_null], _state(contract), now=NOW)
    assert not _letters(serde, out)
    (delivery,) = _delivered(out)
    assert "traceparent" not in dict(delivery.headers), "a provider header was passed on"


def test_the_topic_decides_source_and_type(router: Router, serde: AvroSerde) -> None:
    """A record on the CNAF topic claiming to be a DGFiP attestation never reaches anyone as
    such: it is a dead letter, and what is delivered names the topic's provider and dataset."""
    contract = _contract("lyon", {"quotient_familial": ["quotient_familial"]})
    record, _ = _record(serde, "quotient_familial", PERSON, 1, 0)
    forged = _headers(record, ce_source=b"dgfip", ce_type=b"attestation_fiscale")
    out = router.route([forged, record], _state(contract), now=NOW)
    assert len(_letters(serde, out)) == 1
    (delivery,) = _delivered(out)
    headers = dict(delivery.headers)
    assert (headers["ce_source"], headers["ce_type"]) == (b"cnaf", b"quotient_familial")


@pytest.mark.parametrize(("dataset", "subject"), [
    ("quotient_familial", SIREN), ("attestation_vigilance", PERSON)])
def test_a_subject_of_the_wrong_kind_for_the_dataset_is_a_dead_letter(
        router: Router, serde: AvroSerde, dataset: str, subject: str) -> None:
    """A SIREN on a person dataset would be delivered without a pseudonym."""
    contract = _contract("lyon", {dataset: ["statut" if dataset != "quotient_familial"
                                            else "quotient_familial"]})
    record, _ = _record(serde, dataset, subject, 1, 0)
    out = router.route([record], _state(contract), now=NOW)
    (letter,) = _letters(serde, out)
    assert letter["field"] == "ce_subject"
    assert not _delivered(out)


def test_a_contract_that_no_longer_compiles_is_audited_invalid_and_the_others_deliver(
        router: Router, serde: AvroSerde) -> None:
    """A contract recorded when the catalog still had a field: the router neither raises nor
    skips it silently; its decisions are audited ``contract_invalid``, the others deliver."""
    good = _contract("lyon", {"quotient_familial": ["quotient_familial"]})
    removed_field = _contract("bron", {"quotient_familial": ["quotient_familial", "supprime"]},
                              checked=False)
    removed_dataset = _contract("caluire", {"quotient_familial": ["quotient_familial"],
                                            "dataset_retire": ["statut"]}, checked=False)
    records = [_record(serde, "quotient_familial", PERSON, seed, seed)[0] for seed in (1, 2)]
    with structlog.testing.capture_logs() as logs:
        out = router.route(records, _state(good, removed_field, removed_dataset), now=NOW)
    assert sorted(line["contract"] for line in logs if line["log_level"] == "error") == [
        "bron", "caluire"], "each broken contract is logged, once"
    assert not _letters(serde, out)
    assert {o.topic for o in _delivered(out)} == {good.delivery_topic}
    assert len(_delivered(out)) == 2
    audits = [serde.decode(o.value)[1] for o in out if o.topic == AUDIT]
    verdicts = {(a["contract_id"], a["reason"]) for a in audits}
    assert verdicts == {("lyon", None), ("bron", "contract_invalid"),
                        ("caluire", "contract_invalid")}
    assert len(audits) == 6, "one audit record per contract and event"
    assert router.invalid_contracts == {"bron", "caluire"}
    assert router.tally.invalid_contracts == 2, "the metrics' level"
    assert router.tally.withheld[("sub-bron", "bron", "contract_invalid")] == 2


def test_a_fixed_contract_routes_again(router: Router, serde: AvroSerde) -> None:
    broken = _contract("bron", {"quotient_familial": ["supprime"]}, checked=False)
    record, _ = _record(serde, "quotient_familial", PERSON, 1, 0)
    router.route([record], _state(broken), now=NOW)
    fixed = _state(_contract("bron", {"quotient_familial": ["quotient_familial"]}))
    fixed.generation = 2
    out = router.route([record], fixed, now=NOW)
    assert len(_delivered(out)) == 1
    assert router.invalid_contracts == frozenset()


def _utf16_avro_long_spaced(nir: str) -> list[bytes]:
    """A NIR as careless code writes it in bytes: every spelling a byte scan could miss."""
    spaced = " ".join((nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:]))
    number = int(nir)
    zigzag = number << 1
    varint = bytearray()
    while True:
        byte, zigzag = zigzag & 0x7F, zigzag >> 7
        varint.append(byte | (0x80 if zigzag else 0))
        if not zigzag:
            break
    return [nir.encode("utf-16-le"), nir.encode("utf-16-be"), bytes(varint),
            spaced.encode(), nir[:13].encode(), f"{nir[:3]}.{nir[3:7]}.{nir[7:]}".encode(),
            b"Jean-Pierre DUPONT, ne le 1984-12-04"]


def test_a_dead_letter_copies_nothing_the_record_holds(router: Router, serde: AvroSerde) -> None:
    """Whatever personal data a bad record carries, in whatever encoding, the dead letter keeps
    only where the record is and what is wrong with it."""
    contract = _contract("lyon", {"quotient_familial": ["quotient_familial"]})
    for secret in _utf16_avro_long_spaced(NIR):
        value = struct.pack(">bI", 0, 1) + secret  # framed, but not the dataset's Avro
        record = SourceRecord("provider.cnaf.quotient_familial", 3, 17, 1_790_000_000_000,
                              secret, value,
                              [("ce_specversion", b"1.0"), ("ce_id", b"e-1"),
                               ("ce_source", b"cnaf"), ("ce_type", b"quotient_familial"),
                               ("ce_subject", PERSON.encode()), ("x-note", secret),
                               (secret.decode("latin-1"), b"1")])
        (out,) = router.route([record], _state(contract), now=NOW)
        assert out.topic == DLQ
        assert secret not in out.value, "the dead letter copied the record"
        assert out.key is None
        assert not out.headers
        letter = serde.decode(out.value)[1]
        assert set(letter) == {"error", "field", "origin_topic", "origin_partition",
                               "origin_offset", "origin_timestamp", "failed_at", "schema_id",
                               "header_names"}
        assert (letter["origin_partition"], letter["origin_offset"]) == (3, 17)
        assert letter["origin_timestamp"] == datetime.fromtimestamp(1_790_000_000, UTC)
        assert letter["schema_id"] == 1
        assert letter["header_names"] == ["ce_specversion", "ce_id", "ce_source", "ce_type",
                                          "ce_subject", "other", "other"]


@pytest.mark.parametrize("spelling", [NIR, f"{NIR[:1]} {NIR[1:3]} {NIR[3:5]} {NIR[5:7]} "
                                      f"{NIR[7:10]} {NIR[10:13]} {NIR[13:]}", NIR[:13]],
                         ids=["unbroken", "spaced", "without-key"])
def test_a_nir_in_free_text_on_a_provider_topic_is_a_dead_letter(
        router: Router, serde: AvroSerde, spelling: str) -> None:
    """A provider may write to Kafka without the edge: the router scans every string again."""
    contract = _contract("lyon", {"statut_etudiant_boursier": ["ville_etudes"]})
    record, _ = _record(serde, "statut_etudiant_boursier", PERSON, 1, 0)
    schema = CATALOG.dataset("statut_etudiant_boursier").latest
    schema_id, datum = serde.decode(record.value or b"", schema.parsed)
    value = frame(schema_id, encode(schema.parsed, {**datum, "ville_etudes": f"Lyon {spelling}"}))
    tainted = SourceRecord(record.topic, 0, 0, None, record.key, value, record.headers)
    out = router.route([tainted, record], _state(contract), now=NOW)
    (letter,) = _letters(serde, out)
    assert letter["field"] == "data.ville_etudes"
    assert spelling.encode() not in b"".join(o.value for o in out)
    assert len(_delivered(out)) == 1, "the untainted record was not routed"


@pytest.mark.parametrize("schema_id", [2**31, 2**32 - 1])
def test_a_value_naming_a_schema_id_no_registry_has_is_a_dead_letter(
        router: Router, serde: AvroSerde, schema_id: int) -> None:
    """The wire format has four bytes for the id, a registry's ids fit an Avro int: the dead
    letter of such a value used to fail to encode, and the whole batch with it."""
    contract = _contract("lyon", {"quotient_familial": ["quotient_familial"]})
    record, _ = _record(serde, "quotient_familial", PERSON, 1, 0)
    value = struct.pack(">BI", 0, schema_id) + (record.value or b"")[5:]
    forged = SourceRecord(record.topic, 0, 0, None, record.key, value, record.headers)
    out = router.route([forged, record], _state(contract), now=NOW)
    (letter,) = _letters(serde, out)
    assert letter["error"].startswith("FramingError: ")
    assert letter["schema_id"] is None
    assert len(_delivered(out)) == 1, "the next record was not routed"


@pytest.mark.parametrize("key", [None, b"", ("sr1_" + "ef" * 32).encode(),
                                 PERSON.encode() + b" "],
                         ids=["missing", "empty", "another-subject", "padded"])
def test_a_record_keyed_otherwise_than_by_its_subject_is_a_dead_letter(
        router: Router, serde: AvroSerde, key: bytes | None) -> None:
    """The key places the event, the subject decides it: when they differ, which one is the
    person? A producer without a key also places events anywhere, so that one would be routed
    or refused by chance."""
    contract = _contract("lyon", {"quotient_familial": ["quotient_familial"]})
    record, _ = _record(serde, "quotient_familial", PERSON, 1, 0)
    rekeyed = SourceRecord(record.topic, 0, 0, None, key, record.value, record.headers)
    out = router.route([rekeyed, record], _state(contract), now=NOW)
    (letter,) = _letters(serde, out)
    assert letter["field"] == "key"
    assert letter["error"].startswith("UnroutableRecord: key: ")
    assert len(_delivered(out)) == 1, "the next record was not routed"


REFUSALS = {"UnroutableRecord", "InvalidIdentifier", "ValidationError", "FramingError",
            "DecodeError"}
"""The bus's own refusals of a record: each names a field, or (decoding) says the value is."""


def _fuzzed_bus() -> tuple[Router, AvroSerde, dict[str, Valid], HostileRecords, BusState]:
    """A router under one contract per dataset taking every field (anything routed shows),
    a valid record of every dataset, and the values of other schemas to forge with."""
    serde = AvroSerde(MemoryRegistry())  # type: ignore[arg-type]
    valid = {}
    for dataset in CATALOG.datasets():
        subject = SIREN if dataset.subject_kind == "company" else PERSON
        record, _ = _record(serde, dataset.id, subject, 1, 0)
        valid[dataset.id] = Valid(ProviderRecord.of(record), dataset.latest.parsed,
                                  dataset.latest.parsed, dataset.subject_kind == "company")
    letter = serde.decode(_fuzzed_letter(serde))[1]
    assert letter["origin_offset"] == 0
    foreign = [v.record.value or b"" for v in valid.values()] + [_fuzzed_letter(serde)]
    contracts = [_contract(f"all-{d.id}".replace("_", "-"),
                           {d.id: [f["name"] for f in d.latest.raw["fields"]]})
                 for d in CATALOG.datasets()]
    hostile = HostileRecords([p for d in CATALOG.datasets() for p in d.providers],
                             sorted(valid), foreign)
    return Router(CATALOG, serde, Pseudonymiser(SECRET)), serde, valid, hostile, _state(*contracts)


def _fuzzed_letter(serde: AvroSerde) -> bytes:
    """A dead letter's value: a bus record's schema, framed as the registry gives it."""
    router = Router(CATALOG, serde, Pseudonymiser(SECRET))
    (letter,) = router.route([SourceRecord("provider.cnaf.quotient_familial", 0, 0, None, None,
                                           b"x", [])], BusState(), now=NOW)
    return letter.value


def _copied(hostile: SourceRecord) -> list[bytes]:
    """What of a hostile record must appear nowhere: every key or header value holding a NIR."""
    return [part for part in (hostile.key, *(v for _, v in hostile.headers))
            if part and contains_nir(part)]


def test_generated_hostile_records_are_each_one_dead_letter_and_the_next_is_routed() -> None:
    """Every record is wrong in one or two ways (``tests.hostile_records.DEFECTS``): it becomes
    exactly one dead letter, a refusal of the bus naming the field (or the value, when it cannot
    be decoded) that copies nothing of the record, no NIR reaches a log line, and the valid
    record behind it is delivered."""
    router, serde, valid, hostile, state = _fuzzed_bus()

    @settings(max_examples=hostile_inputs.QUOTAS["provider records"], deadline=None,
              suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(dataset=st.sampled_from(sorted(valid)), rng=st.randoms(use_true_random=True),
           stamp=st.one_of(st.none(), st.integers(0, 2**41)))
    def one(dataset: str, rng: random.Random, stamp: int | None) -> None:
        hostile_inputs.tried("provider records")
        made = hostile.make(rng, valid[dataset])
        base = valid[dataset].record
        bad = SourceRecord(base.topic, 0, 5, stamp, made.key, made.value, made.headers)
        good = SourceRecord(base.topic, 0, 6, stamp, base.key, base.value, base.headers)
        with structlog.testing.capture_logs() as logs:
            out = router.route([bad, good], state, now=NOW)
        assert out[0].topic == DLQ, made.defects
        assert all(o.topic != DLQ for o in out[1:]), made.defects
        assert any(o.topic.startswith("deliver.") for o in out[1:]), "the next was not routed"
        letter = serde.decode(out[0].value)[1]
        kind = letter["error"].partition(": ")[0]
        assert kind in REFUSALS, (made.defects, letter["error"])
        assert letter["field"] or kind in ("FramingError", "DecodeError"), made.defects
        assert letter["origin_offset"] == 5
        for text in (letter["error"], letter["field"] or "", repr(logs)):
            assert not contains_nir(text), made.defects
        for part in _copied(bad):
            assert part not in out[0].value
            assert part.decode(errors="replace") not in repr(logs)

    with hostile_inputs.at_least("provider records"):
        one()
