"""A NIR hidden anywhere, in any usual spelling, reaches no topic, log line, refusal, dead letter
or audit record: the edge refuses it (in an event, a consent or a contract), and a record written
past the edge is dead-lettered without it.

Hypothesis draws a valid NIR (Corsican ones included), a spelling (unbroken, spaced, dotted,
slashed, underscored, with non-breaking spaces; with or without its key) and a place: any string
of any dataset's event, the id, the envelope, a key of the data as it reaches the edge; any
header (name or value), the record key or any string of the data as a provider writing to Kafka
directly could put it. Everything the bus then produces is captured (the refusal, the records it
would write, every log line) and scanned, with the bus's own detector and for the very digits.
"""

from __future__ import annotations

import copy
import json
import secrets
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from connectors.publisher import Publisher, PublishRefused
from schemas.catalog import Catalog
from schemas.codec import encode, frame, from_json
from schemas.constraints import holds_plain_numbers
from schemas.identifiers import nir_key
from schemas.nir_detection import contains_nir, may_hold_nir
from schemas.serde import AvroSerde
from streams.dev.synthetic import DATASETS, generate
from streams.privacy.pseudonyms import Pseudonymiser
from streams.routing.records import SourceRecord
from streams.routing.router import Router
from streams.settings import Settings
from streams.state.bus_state import BusState
from streams.state.contract import Contract
from streams.state.ledger import ConsentRefused, check_consent_texts
from tests.unit.json_paths import string_paths
from tests.unit.memory_registry import MemoryRegistry

CATALOG = Catalog.load()
SEPARATORS = ["", " ", ".", "/", "_", "\u00a0", "\u202f"]
GROUPS = (1, 2, 2, 2, 3, 3)  # sex, year, month, département, commune, order (key after)


@st.composite
def nirs(draw: st.DrawFn) -> str:
    """A valid 13-character NIR number, Corsican départements included."""
    month = draw(st.sampled_from([f"{m:02d}" for m in (*range(1, 13), *range(20, 100))]))
    department = draw(st.sampled_from([*(f"{d:02d}" for d in range(1, 100)), "2A", "2B"]))
    return (draw(st.sampled_from("1278")) + f"{draw(st.integers(0, 99)):02d}" + month
            + department + f"{draw(st.integers(1, 999)):03d}{draw(st.integers(1, 999)):03d}")


@st.composite
def spellings(draw: st.DrawFn) -> tuple[str, str]:
    """(spelling, compact digits) of a NIR as people and programs write it."""
    number = draw(nirs())
    keyed = draw(st.booleans())
    separator = draw(st.sampled_from(SEPARATORS))
    parts, start = [], 0
    for length in GROUPS:
        parts.append(number[start:start + length])
        start += length
    if keyed:
        parts.append(f"{nir_key(number):02d}")
    if draw(st.booleans()):
        parts = [part.lower() for part in parts]
    return separator.join(parts), number + (f"{nir_key(number):02d}" if keyed else "")


def _event(dataset_id: str) -> dict[str, Any]:
    return json.loads(json.dumps(next(generate(dataset_id, 1, 11))))


EVENTS = {dataset_id: _event(dataset_id) for dataset_id in DATASETS}
EDGE_PLACES = sorted({(dataset_id, path) for dataset_id, event in EVENTS.items()
                      for path in string_paths(event) if path != ("subject",)}
                     | {(d, ("<key>",)) for d in EVENTS} | {(d, ("data", "<key>")) for d in EVENTS})


def _free_text(dataset_id: str, path: tuple[Any, ...]) -> bool:
    """Whether the data holds free text at ``path`` (an Avro string, not an enum or a date),
    other than a SIREN or SIRET, which the scan leaves alone: a provider may write any text
    there."""
    if "siret" in str(path[-1]) or "siren" in str(path[-1]):
        return False
    schema = CATALOG.dataset(dataset_id).latest.parsed
    datum = next(iter(generate(dataset_id, 1, 11)))["data"]
    converted = from_json(schema, datum)
    target: Any = converted
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = "free text"
    try:
        encode(schema, converted)
    except ValueError:
        return False
    return True


DATA_PLACES = sorted((dataset_id, path) for dataset_id, event in EVENTS.items()
                     for path in string_paths(event["data"]) if _free_text(dataset_id, path))
HEADERS = ["ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "traceparent",
           "<header name>", "<record key>"]


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Publisher, Router]:
    registry = MemoryRegistry()
    cache = tmp_path_factory.mktemp("cache")
    edge = Publisher(Settings(subject_secret=SecretStr(secrets.token_hex(32)), cache_dir=cache),
                     CATALOG, registry)  # type: ignore[arg-type]
    router = Router(CATALOG, AvroSerde(registry),  # type: ignore[arg-type]
                    Pseudonymiser(SecretStr(secrets.token_hex(32))))
    return edge, router


def _state() -> BusState:
    """One contract per dataset, taking every field: anything delivered is scanned."""
    state = BusState()
    for dataset in CATALOG.datasets():
        fields = [f["name"] for f in dataset.latest.raw["fields"]]
        contract = Contract.checked({
            "id": f"all-{dataset.id}".replace("_", "-"), "subscriber": "ville-de-lyon",
            "subscriber_siret": "21690123100011", "purpose": "Essai", "legal_basis": "Essai",
            "datasets": {dataset.id: fields}, "consent": "not_required", "population": "all",
            "retention": "P30D", "valid_from": "2026-01-01"}, CATALOG)
        state.contracts[contract.id] = contract
    state.generation = 1
    return state


STATE = _state()


def _assert_nowhere(spelling: str, compact: str, *texts: str | bytes) -> None:
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        assert not contains_nir(data), "a NIR reached what the bus writes"
        assert compact.encode() not in data.upper()
        assert spelling.encode() not in data


def _place(event: dict[str, Any], path: tuple[Any, ...], hidden: str) -> None:
    target: Any = event
    for step in path[:-1]:
        target = target[step]
    if path[-1] == "<key>":
        target[f"n{hidden}"] = "x"
    else:
        target[path[-1]] = f"dossier {hidden} fin" if path[-1] != "id" else f"d-{hidden}"


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(place=st.sampled_from(EDGE_PLACES), nir=spellings())
def test_the_edge_refuses_a_hidden_nir_and_repeats_it_nowhere(
        bus: tuple[Publisher, Router], place: tuple[str, tuple[Any, ...]],
        nir: tuple[str, str]) -> None:
    edge, _ = bus
    spelling, compact = nir
    dataset_id, path = place
    event = copy.deepcopy(EVENTS[dataset_id])
    _place(event, path, spelling)
    with structlog.testing.capture_logs() as logs, pytest.raises(PublishRefused) as refused:
        edge.prepare(event)
    _assert_nowhere(spelling, compact, str(refused.value), repr(logs))


def _tainted(record: SourceRecord, router: Router, place: str | tuple[str, tuple[Any, ...]],
             hidden: str) -> SourceRecord:
    key, value, headers = record.key, record.value, list(record.headers)
    if place == "<record key>":
        key = hidden.encode()
    elif place == "<header name>":
        headers.append((f"x-{hidden}", b"1"))
    elif isinstance(place, str):
        headers = [(n, v) for n, v in headers if n != place] + [(place, hidden.encode())]
    else:
        dataset = CATALOG.dataset(place[0])
        schema_id, datum = router.serde.decode(value or b"", dataset.latest.parsed)
        target: Any = datum
        for step in place[1][:-1]:
            target = target[step]
        target[place[1][-1]] = f"dossier {hidden} fin"
        value = frame(schema_id, encode(dataset.latest.parsed, datum))
    return SourceRecord(record.topic, 0, 7, None, key, value, headers)


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(place=st.one_of(st.sampled_from(HEADERS), st.sampled_from(DATA_PLACES)),
       dataset_id=st.sampled_from(sorted(EVENTS)), nir=spellings())
def test_a_nir_written_past_the_edge_reaches_no_record_or_log(
        bus: tuple[Publisher, Router], place: str | tuple[str, tuple[Any, ...]],
        dataset_id: str, nir: tuple[str, str]) -> None:
    """A provider writing to Kafka directly: whatever the router writes (deliveries, audit
    records, dead letters) and logs holds none of it, and the record is not delivered."""
    edge, router = bus
    spelling, compact = nir
    if not isinstance(place, str):
        dataset_id = place[0]
    clean = edge.prepare(EVENTS[dataset_id])
    record = SourceRecord(clean.topic, 0, 7, None, clean.key, clean.value, clean.headers)
    tainted = _tainted(record, router, place, spelling)
    with structlog.testing.capture_logs() as logs:
        out = router.route([tainted], STATE)
    _assert_nowhere(spelling, compact, repr(logs),
                    *(part for o in out for part in (o.key or b"", o.value,
                                                     *(n.encode() + v for n, v in o.headers))))
    hidden_in_payload = place not in ("traceparent", "<header name>", "<record key>")
    if hidden_in_payload:  # what the router reads: the record goes nowhere but the dead letters
        assert {o.topic for o in out} == {"bus.dlq"}, place


CONTRACT = {"id": "lyon-cantine", "subscriber": "ville-de-lyon",
            "subscriber_siret": "21690123100011", "purpose": "Tarification sociale",
            "legal_basis": "CRPA art. L114-8", "datasets": {"quotient_familial": ["annee"]},
            "consent": "opt_in", "population": "all", "retention": "P90D",
            "valid_from": "2026-01-01"}


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(["id", "subscriber", "purpose", "legal_basis"]), nir=spellings(),
       glue=st.sampled_from(["-", " ", ""]))
def test_a_contract_naming_a_nir_anywhere_is_refused_without_repeating_it(
        field: str, nir: tuple[str, str], glue: str) -> None:
    """A contract's words become topic names, delivery headers and audit records."""
    spelling, compact = nir
    if field in ("id", "subscriber"):  # names: lower-case letters, digits and hyphens only
        spelling = compact.lower()
    document = CONTRACT | {field: f"{CONTRACT[field]}{glue or '-'}{spelling}"}
    with pytest.raises(ValidationError) as refused:
        Contract.checked(document, CATALOG)
    problems = refused.value.errors(include_input=False)
    assert [problem["loc"] for problem in problems] == [(field,)]
    _assert_nowhere(spelling, compact, str(refused.value), repr(problems))


@settings(max_examples=200, deadline=None)
@given(nir=spellings(), field=st.sampled_from(["collected_by", "evidence_ref"]))
def test_a_consent_carrying_a_nir_is_refused_before_anything_is_written(
        nir: tuple[str, str], field: str) -> None:
    spelling, compact = nir
    provenance = {"collected_by": "21690123100011", "evidence_ref": "formulaire 2026-118"}
    provenance[field] = spelling if field == "collected_by" else f"dossier {spelling}"
    with pytest.raises(ConsentRefused) as refused:
        check_consent_texts(provenance["collected_by"], provenance["evidence_ref"])
    assert refused.value.field == field
    _assert_nowhere(spelling, compact, str(refused.value))


@pytest.mark.parametrize(("collected_by", "evidence"), [
    ("ville-de-lyon", None), ("21690123100012", None), (None, "x" * 201), (None, "a\nb")],
    ids=["not-a-siret", "bad-luhn", "long-evidence", "unprintable-evidence"])
def test_a_consent_s_provenance_is_a_siret_and_a_short_reference(
        collected_by: str | None, evidence: str | None) -> None:
    with pytest.raises(ConsentRefused) as refused:
        check_consent_texts(collected_by, evidence)
    assert refused.value.field == ("collected_by" if collected_by else "evidence_ref")


@pytest.mark.parametrize("text", ["Tarification\u202eelaicos", "Tarif\x00sociale",
                                  "Tarif\u200bsociale"], ids=["bidi", "nul", "zero-width"])
def test_a_contract_text_with_invisible_characters_is_refused(text: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Contract.checked(CONTRACT | {"purpose": text}, CATALOG)
    assert [p["loc"] for p in refused.value.errors()] == [("purpose",)]


@settings(max_examples=500, deadline=None)
@given(nir=spellings(), before=st.text(max_size=20), after=st.text(max_size=20),
       encoding=st.sampled_from(["utf-8", "utf-16-le", "utf-16-be"]))
def test_the_router_s_byte_prefilter_never_hides_a_nir(nir: tuple[str, str], before: str,
                                                        after: str, encoding: str) -> None:
    """The router walks an event's strings only when its encoded bytes may hold a NIR: that
    prefilter must say so for every text the detector would flag, in every encoding."""
    text = f"{before} {nir[0]} {after}"
    assert contains_nir(text)
    assert may_hold_nir(text.encode(encoding, errors="surrogatepass"))


def test_datasets_with_plain_numbers_are_walked_whatever_their_bytes() -> None:
    """A NIR typed as an Avro long is binary: no byte scan sees it, so those datasets are
    always walked."""
    numbers = {d.id for d in CATALOG.datasets() if holds_plain_numbers(d.latest.raw)}
    assert numbers == {"paiements_france_travail", "statut_etudiant_boursier"}
    assert not holds_plain_numbers({"type": "long", "logicalType": "timestamp-millis"})
    assert holds_plain_numbers(["null", {"type": "array", "items": "long"}])
