"""Property tests of the privacy invariants of routing (hypothesis), without broker or registry.

Drawn: sets of contracts over the catalog (any consent and population modes, validity windows
around the routing day, some revoked, subscribers shared between some contracts), subjects
(person references and SIRENs), and each subject's enrolment and latest consent choice under
each contract. Checked, on :func:`streams.routing.rules.decide_all` and on the whole
:class:`streams.routing.router.Router` (with an in-memory schema registry):

- every verdict is the specification's, computed here independently of the bus's code, and
  the contracts that decide are those naming the dataset that follow the subject: every
  ``population: all`` one, and the ``enrolled`` ones that enrolled it (a contract that does not
  follow a person takes no decision about it);
- **without a matching active contract nothing is delivered**: a delivery only ever goes to a
  contract naming the event's dataset, in force on the routing day, whose population and
  consent rules pass; and a dataset no active contract names yields no delivery at all;
- **a delivered field is always in the contract**, with the value the provider published;
- **two subscribers never get the same pseudonym for one person**, while one subscriber always
  gets the same one (a company's SIREN is the same for everyone, as it is public).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from schemas.catalog import Catalog
from schemas.codec import encode, frame, from_json
from schemas.projection import project_datum
from schemas.registration import value_subject
from schemas.serde import AvroSerde
from streams.dev.synthetic import generate
from streams.kafka.topics import AUDIT, DLQ
from streams.privacy.pseudonyms import Pseudonymiser
from streams.routing.records import SourceRecord
from streams.routing.router import Router
from streams.routing.rules import NO_TERMS, decide_all, still_audited, terms_by_dataset
from streams.state.bus_state import BusState
from streams.state.contract import Contract
from streams.state.directory import MemoryDirectory, SubjectFile
from tests.unit.memory_registry import MemoryRegistry

CATALOG = Catalog.load()
DATASETS = {d.id: d for d in CATALOG.datasets()}
FIELDS = {d.id: [f["name"] for f in d.latest.raw["fields"]] for d in CATALOG.datasets()}
DAY = date(2026, 11, 28)
NOW = datetime.combine(DAY, time(12, 0), tzinfo=UTC)
SECRET = SecretStr("a bus secret for property tests, long enough to key HMACs")
SIRET = "21690123100011"

names = st.from_regex(r"[a-z][a-z0-9-]{2,15}", fullmatch=True)
references = st.binary(min_size=32, max_size=32).map(lambda b: "sr1_" + b.hex())
sirens = st.sampled_from(["732829320", "552100554", "356000000", "180043010"])


@st.composite
def contracts(draw: st.DrawFn, contract_id: str, subscriber: str) -> Contract:
    chosen = draw(st.lists(st.sampled_from(sorted(DATASETS)), min_size=1, max_size=3,
                           unique=True))
    companies = any(DATASETS[d].subject_kind == "company" for d in chosen)
    start = DAY + timedelta(days=draw(st.integers(-400, 60)))
    end = draw(st.none() | st.integers(0, 800).map(lambda n: start + timedelta(days=n)))
    revoked = draw(st.integers(0, 4)) == 0
    return Contract.checked({
        "id": contract_id, "subscriber": subscriber, "subscriber_siret": SIRET,
        "purpose": "Propriétés du routage", "legal_basis": "Essai",
        "datasets": {d: draw(st.lists(st.sampled_from(FIELDS[d]), min_size=1, unique=True))
                     for d in chosen},
        "consent": "not_required" if companies else draw(
            st.sampled_from(["not_required", "opt_in", "opt_out"])),
        "population": draw(st.sampled_from(["all", "enrolled"])),
        "retention": draw(st.sampled_from(["P90D", "P1Y", "PT12H"])),
        "valid_from": start, "valid_until": end, "revoked": revoked,
        "revoked_at": datetime(2026, 6, 1, tzinfo=UTC) if revoked else None,
    }, CATALOG)


@st.composite
def buses(draw: st.DrawFn) -> tuple[dict[str, Contract], list[str]]:
    """Contracts (ids unique, subscribers sometimes shared) and the subjects of the events."""
    ids = draw(st.lists(names, min_size=1, max_size=6, unique=True))
    subscribers = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    drawn = {cid: draw(contracts(cid, draw(st.sampled_from(subscribers)))) for cid in ids}
    subjects = draw(st.lists(references, min_size=1, max_size=4, unique=True))
    return drawn, subjects + draw(st.lists(sirens, max_size=2, unique=True))


@dataclass
class Drawn:
    """A bus state, and what was drawn into it, kept apart for the specification."""

    state: BusState
    enrolled: set[tuple[str, str]] = field(default_factory=set)
    consents: dict[tuple[str, str], str] = field(default_factory=dict)

    def file_of(self, subject: str) -> SubjectFile:
        return self.state.directory.file_of(subject, 0)

    def follows(self, contract: Contract, subject: str) -> bool:
        return contract.population == "all" or (contract.id, subject) in self.enrolled


@st.composite
def states(draw: st.DrawFn, contracts: Mapping[str, Contract],
           subjects: Sequence[str]) -> Drawn:
    directory = MemoryDirectory()
    drawn = Drawn(BusState(contracts=dict(contracts), directory=directory, generation=1))
    for cid in contracts:
        for subject in subjects:
            if draw(st.booleans()):
                drawn.enrolled.add((cid, subject))
                directory.enrol(cid, subject)
            status = draw(st.sampled_from([None, "granted", "withdrawn"]))
            if status is not None:
                drawn.consents[(cid, subject)] = status
                directory.consent(cid, subject, status)
    return drawn


def in_force(contract: Contract, day: date) -> bool:
    return not contract.revoked and contract.valid_from <= day and (
        contract.valid_until is None or day <= contract.valid_until)


def specified(contract: Contract, subject: str, state: Drawn, day: date) -> str | None:
    """The specification's verdict, written from the issue, not from the bus's code, for a
    contract that follows the subject (the others take no decision)."""
    if not in_force(contract, day):
        return "contract_inactive"
    consent = state.consents.get((contract.id, subject))
    if contract.consent == "opt_in" and consent != "granted":
        return "no_consent"
    if contract.consent == "opt_out" and consent == "withdrawn":
        return "objection"
    return None


# --- the decision -----------------------------------------------------------------------------


@given(st.data())
def test_every_verdict_is_the_specified_one(data: st.DataObject) -> None:
    contracts, subjects = data.draw(buses())
    state = data.draw(states(contracts, subjects))
    index = terms_by_dataset(state.state.contracts)
    day = DAY + timedelta(days=data.draw(st.integers(-3, 3)))
    for dataset in DATASETS:
        for subject in subjects:
            decisions = decide_all(index.get(dataset, NO_TERMS), state.file_of(subject), day)
            naming = sorted(c.id for c in contracts.values()
                            if dataset in c.datasets and state.follows(c, subject))
            assert sorted(d.terms.contract_id for d in decisions) == naming
            for decision in decisions:
                contract = contracts[decision.terms.contract_id]
                assert decision.terms.dataset == dataset
                assert decision.terms.fields == contract.datasets[dataset]
                assert decision.reason == specified(contract, subject, state, day)


@given(st.data())
def test_without_an_active_contract_nothing_is_delivered(data: st.DataObject) -> None:
    contracts, subjects = data.draw(buses())
    state = data.draw(states(contracts, subjects))
    index = terms_by_dataset(state.state.contracts)
    for dataset in DATASETS:
        active = [c for c in contracts.values() if dataset in c.datasets and in_force(c, DAY)]
        for subject in subjects:
            delivered = [d for d in decide_all(index.get(dataset, NO_TERMS),
                                               state.file_of(subject), DAY)
                         if d.delivered]
            if not active:
                assert delivered == []
            for decision in delivered:
                assert decision.terms.contract in active
                assert decision.reason is None


@given(st.data())
def test_a_delivered_field_is_always_in_the_contract(data: st.DataObject) -> None:
    contracts, subjects = data.draw(buses())
    state = data.draw(states(contracts, subjects))
    index = terms_by_dataset(state.state.contracts)
    extra = data.draw(st.lists(names, max_size=3))
    for dataset, fields in FIELDS.items():
        datum = {name: data.draw(st.integers() | st.text(max_size=5) | st.none())
                 for name in [*fields, *extra]}
        for decision in decide_all(index.get(dataset, NO_TERMS), state.file_of(subjects[0]),
                                   DAY):
            if not decision.delivered:
                continue
            allowed = set(contracts[decision.terms.contract_id].datasets[dataset])
            projected = project_datum(datum, decision.terms.fields)
            assert set(projected) == allowed & set(datum)
            assert all(projected[name] == datum[name] for name in projected)


# --- pseudonyms ------------------------------------------------------------------------------


@given(st.lists(names, min_size=2, max_size=5, unique=True), references)
def test_two_subscribers_never_get_the_same_pseudonym_for_one_person(
        subscribers: list[str], reference: str) -> None:
    pseudonymiser = Pseudonymiser(SECRET)
    seen = [pseudonymiser.pseudonym(s, reference) for s in subscribers]
    assert len(set(seen)) == len(seen)
    assert reference not in seen
    again = Pseudonymiser(SECRET)
    assert [again.pseudonym(s, reference) for s in subscribers] == seen, "not stable"
    assert all(p.startswith("ps2_") and len(p) == 68 for p in seen)


@given(names, st.lists(references, min_size=2, max_size=5, unique=True), sirens)
def test_one_subscriber_tells_persons_apart_and_sees_sirens_as_they_are(
        subscriber: str, refs: list[str], siren: str) -> None:
    pseudonyms = Pseudonymiser(SECRET).for_subscriber(subscriber)
    assert len({pseudonyms.pseudonym(r) for r in refs}) == len(refs)
    assert pseudonyms.pseudonym(siren) == siren


# --- the whole router, with an in-memory registry ------------------------------------------


def _record(serde: AvroSerde, dataset_id: str, subject: str, seed: int,
            offset: int) -> tuple[SourceRecord, str]:
    dataset = DATASETS[dataset_id]
    event = next(iter(generate(dataset_id, 1, seed)))
    topic = CATALOG.topic_for(event["source"], dataset_id)
    schema = dataset.latest
    value = frame(serde.schema_id(value_subject(topic), schema.text),
                  encode(schema.parsed, from_json(schema.parsed, event["data"])))
    event_id = f"event-{offset}-{seed}"  # unique within a batch
    headers = [("ce_specversion", b"1.0"), ("ce_id", event_id.encode()),
               ("ce_source", event["source"].encode()), ("ce_type", dataset_id.encode()),
               ("ce_subject", subject.encode()), ("ce_time", event["time"].encode()),
               ("content-type", b"application/avro")]
    return SourceRecord(topic, 0, offset, None, subject.encode(), value, headers), event_id


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_router_delivers_only_contract_fields_under_pairwise_pseudonyms(
        data: st.DataObject) -> None:
    contracts, subjects = data.draw(buses())
    state = data.draw(states(contracts, subjects))
    serde = AvroSerde(MemoryRegistry())  # type: ignore[arg-type]
    pseudonymiser = Pseudonymiser(SECRET)
    router = Router(CATALOG, serde, pseudonymiser)
    events = []
    for offset in range(data.draw(st.integers(1, 6))):
        subject = data.draw(st.sampled_from(subjects))
        kind = "person" if subject.startswith("sr1_") else "company"
        dataset = data.draw(st.sampled_from(sorted(
            d for d in DATASETS if DATASETS[d].subject_kind == kind)))
        record, event_id = _record(serde, dataset, subject,
                                   data.draw(st.integers(1, 2**32)), offset)
        events.append((record, event_id, dataset, subject))

    out = router.route([e[0] for e in events], state.state, now=NOW)

    assert not [o for o in out if o.topic == DLQ]
    ids = [dict(o.headers).get("ce_id") for o in out]
    for record, event_id, dataset, subject in events:
        # Ended contracts are audited for a grace period, then leave the routing index.
        naming = [c for c in contracts.values()
                  if dataset in c.datasets and still_audited(c, DAY)
                  and state.follows(c, subject)]
        source = record.topic.split(".")[1]
        own_ids = {pseudonymiser.for_subscriber(c.subscriber).event_id(source, event_id).encode()
                   for c in contracts.values()}  # each subscriber's own id for this event
        deliveries = [o for o, i in zip(out, ids, strict=True)
                      if o.topic != AUDIT and i in own_ids]
        audits = [o for o in out if o.topic == AUDIT and serde.decode(o.value)[1]["event_id"]
                  == event_id]
        assert len(audits) == len(naming), ("one audit record per contract naming the dataset "
                                            "and following the subject")
        expected = {c.delivery_topic for c in naming
                    if specified(c, subject, state, DAY) is None}
        assert sorted(o.topic for o in deliveries) == sorted(expected)
        _, published = serde.decode(record.value or b"", DATASETS[dataset].latest.parsed)
        keys: dict[str, bytes] = {}
        for delivery in deliveries:
            (contract,) = [c for c in naming if c.delivery_topic == delivery.topic]
            _, datum = serde.decode(delivery.value)
            assert set(datum) == set(contract.datasets[dataset]), "fields outside the contract"
            assert all(datum[f] == published[f] for f in datum)
            assert delivery.key == pseudonymiser.pseudonym(contract.subscriber,
                                                           subject).encode()
            assert dict(delivery.headers)["ce_subject"] == delivery.key
            assert keys.setdefault(contract.subscriber, delivery.key) == delivery.key
        if subject.startswith("sr1_"):
            assert len(set(keys.values())) == len(keys), "two subscribers, one pseudonym"
        else:
            assert set(keys.values()) <= {subject.encode()}


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_ended_contracts_leave_the_index_only_after_the_grace_period(data: st.DataObject) -> None:
    contract = data.draw(contracts("grace-case", "grace-subscriber"))
    day = data.draw(st.dates(date(2025, 1, 1), date(2029, 12, 31)))
    indexed = any(t.contract is contract
                  for terms in terms_by_dataset({contract.id: contract}, day).values()
                  for t in (*terms.everyone, *terms.followers.values()))
    ended = (contract.revoked_at.date() if contract.revoked and contract.revoked_at
             else contract.valid_until)
    assert indexed == (ended is None or day <= ended + timedelta(days=30))
    if contract.is_active(day):
        assert indexed, "an active contract is always routed"
