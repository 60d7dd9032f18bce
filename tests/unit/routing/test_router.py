"""Contracts whose deliveries have the same shape share one Avro encoding of each event.

Several communes on one canteen template each get their own delivery schema (their own record
name, doc and registry subject) but the same fields, so the same Avro body. The router encodes
that body once per event and frames it with each contract's own schema id; a contract with other
fields still gets only its own.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from schemas.codec import encode as avro_encode
from schemas.serde import AvroSerde
from streams.kafka.topics import AUDIT
from streams.privacy.pseudonyms import Pseudonymiser
from streams.routing import router as router_module
from streams.routing.router import Router
from streams.state.bus_state import BusState
from streams.state.contract import Contract
from tests.unit.memory_registry import MemoryRegistry
from tests.unit.routing.test_rules import (
    CATALOG,
    NOW,
    SECRET,
    SIRET,
    _record,
)

SUBJECT = "sr1_" + "ab" * 32


def _contract(contract_id: str, fields: list[str]) -> Contract:
    return Contract.checked({
        "id": contract_id, "subscriber": f"ville-{contract_id}", "subscriber_siret": SIRET,
        "purpose": "Tarification sociale de la restauration scolaire", "legal_basis": "Essai",
        "datasets": {"quotient_familial": fields}, "consent": "not_required",
        "population": "all", "retention": "P90D", "valid_from": "2026-01-01",
    }, CATALOG)


def test_same_shape_deliveries_share_one_encoding_under_their_own_schema_ids(
        monkeypatch: pytest.MonkeyPatch) -> None:
    template = ["quotient_familial", "annee", "mois"]
    state = BusState()
    for contract in (_contract("lyon-cantine", template), _contract("bron-cantine", template),
                     _contract("caluire-cantine", ["quotient_familial"])):
        state.contracts[contract.id] = contract
    serde = AvroSerde(MemoryRegistry())  # type: ignore[arg-type]
    router = Router(CATALOG, serde, Pseudonymiser(SECRET))
    records = [_record(serde, "quotient_familial", SUBJECT, seed, offset)[0]
               for offset, seed in enumerate((7, 8))]
    encoded: list[Any] = []

    def counting(schema: Any, datum: Any) -> bytes:
        encoded.append(datum)
        return avro_encode(schema, datum)

    monkeypatch.setattr(router_module, "encode", counting)
    out = router.route(records, state, now=NOW)

    first = dict(records[0].headers)["ce_id"].decode()
    deliveries = {o.topic.rsplit(".", 1)[1]: o for o in out if o.topic != AUDIT
                  and dict(o.headers)["ce_id"] == router.pseudonymiser.for_subscriber(
                      "ville-" + o.topic.rsplit(".", 1)[1]).event_id("cnaf", first).encode()}
    assert len(encoded) == 4, "two events, two delivery shapes each"
    lyon, bron = deliveries["lyon-cantine"].value, deliveries["bron-cantine"].value
    assert lyon[5:] == bron[5:]  # one body...
    assert lyon[1:5] != bron[1:5]  # ...under each contract's own schema id
    assert set(serde.decode(lyon)[1]) == set(template)
    assert set(serde.decode(bron)[1]) == set(template)
    assert set(serde.decode(deliveries["caluire-cantine"].value)[1]) == {"quotient_familial"}


def test_the_audit_record_of_a_delivery_names_the_delivery_s_own_id() -> None:
    """The join of a delivery to its decision, which needs no secret: each delivery's ``ce_id``
    is in the audit record of its contract's decision, and a withheld decision names none."""
    state = BusState()
    delivering = _contract("lyon-cantine", ["quotient_familial"])
    withholding = _contract("bron-cantine", ["quotient_familial"]).model_copy(
        update={"consent": "opt_in"})
    state.contracts.update({c.id: c for c in (delivering, withholding)})
    serde = AvroSerde(MemoryRegistry())  # type: ignore[arg-type]
    router = Router(CATALOG, serde, Pseudonymiser(SECRET))
    out = router.route([_record(serde, "quotient_familial", SUBJECT, seed, offset)[0]
                        for offset, seed in enumerate((7, 8))], state, now=NOW)

    audits = [serde.decode(o.value)[1] for o in out if o.topic == AUDIT]
    named = {(a["contract_id"], a["delivery_id"]) for a in audits}
    delivered = {(dict(o.headers)["ce_contract"].decode(), dict(o.headers)["ce_id"].decode())
                 for o in out if o.topic != AUDIT}
    assert len(delivered) == 2
    assert named == delivered | {("bron-cantine", None)}


def test_a_replayed_event_is_delivered_with_the_same_ids_and_audited_as_a_replay() -> None:
    """Routing a dead-lettered record again must give each subscriber the same delivery (same
    ``ce_id``, same body) as a first routing would have, so that a replay run twice, or a
    replay of a record that was routed after all, is a duplicate a subscriber recognises."""
    state = BusState()
    contract = _contract("lyon-cantine", ["quotient_familial"])
    state.contracts[contract.id] = contract
    serde = AvroSerde(MemoryRegistry())  # type: ignore[arg-type]
    router = Router(CATALOG, serde, Pseudonymiser(SECRET))
    record, _ = _record(serde, "quotient_familial", SUBJECT, 7, 3)
    first = router.route([record], state, now=NOW)
    replayed = router.route([dataclasses.replace(record, replay=True)], state, now=NOW)

    def delivered(out: list[Any]) -> list[tuple[str, bytes, bytes]]:
        return [(o.topic, dict(o.headers)["ce_id"], o.value) for o in out if o.topic != AUDIT]

    assert delivered(first) == delivered(replayed)
    assert len(delivered(first)) == 1
    audits = [serde.decode(o.value)[1] for o in (*first, *replayed) if o.topic == AUDIT]
    assert [a["replay"] for a in audits] == [False, True]
    assert audits[0]["delivery_id"] == audits[1]["delivery_id"] == \
        delivered(first)[0][1].decode()
