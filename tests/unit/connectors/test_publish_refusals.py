"""The publisher's refusals: a NIR anywhere but the subject is refused, and no refusal repeats
what the provider sent (registry in memory, nothing produced)."""

from __future__ import annotations

import copy
import json
import re
import secrets
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from connectors.publisher import Publisher, PublishRefused
from schemas.catalog import Catalog
from schemas.cloudevent import EVENT_ID, PublishedEvent
from schemas.identifiers import nir_key
from schemas.nir_detection import contains_nir
from streams.dev.synthetic import DATASETS, generate
from streams.settings import Settings
from tests import hostile_inputs
from tests.unit.json_paths import string_paths
from tests.unit.memory_registry import MemoryRegistry

CATALOG = Catalog.load()
NIR = "184127645108946"
_ATTRIBUTES = set(PublishedEvent.model_fields)
SPELLINGS = [NIR, "1 84 12 76 451 089 46", "1.84.12.76.451.089", "1841276451089",
             "1\u00a084\u00a012\u00a076\u00a0451\u00a0089\u00a046", "2 85 07 2A 004 012 " +
             f"{nir_key('285072A004012'):02d}"]


@pytest.fixture(scope="module")
def publisher(tmp_path_factory: pytest.TempPathFactory) -> Publisher:
    config = Settings(subject_secret=SecretStr(secrets.token_hex(32)),
                      cache_dir=tmp_path_factory.mktemp("cache"))
    return Publisher(config, CATALOG, MemoryRegistry())  # type: ignore[arg-type]


def _event(dataset_id: str = "statut_etudiant_boursier", seed: int = 18) -> dict[str, Any]:
    return json.loads(json.dumps(next(generate(dataset_id, 1, seed))))


def _refused(publisher: Publisher, event: dict[str, Any]) -> PublishRefused:
    with pytest.raises(PublishRefused) as refused:
        publisher.prepare(event)
    return refused.value


def _dotted(field: str) -> str:
    """The codec names list items ``[i]``, the NIR scan ``.i``: compare them alike."""
    return re.sub(r"\[(\d+)\]", r".\1", field)


def test_a_valid_event_with_a_nir_subject_is_accepted(publisher: Publisher) -> None:
    for dataset_id in DATASETS:
        outgoing = publisher.prepare(_event(dataset_id))
        assert not contains_nir(outgoing.key)
        assert not contains_nir(outgoing.value)
        assert not any(contains_nir(value) for _, value in outgoing.headers)


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_nir_in_the_id_is_refused(publisher: Publisher, spelling: str) -> None:
    event = _event() | {"id": f"dossier-{spelling}"}
    refusal = _refused(publisher, event)
    assert refusal.field == "id"
    assert not contains_nir(str(refusal))


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize(("dataset_id", "path"), [
    ("statut_etudiant_boursier", ["ville_etudes"]),
    ("quotient_familial", ["allocataires", 0, "prenoms"]),
    ("quotient_familial", ["allocataires", 0, "nom_naissance"]),
])
def test_a_nir_in_free_text_is_refused_naming_the_field(
        publisher: Publisher, spelling: str, dataset_id: str, path: list[Any]) -> None:
    event = _event(dataset_id)
    target = event["data"]
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = f"voir {spelling}"
    refusal = _refused(publisher, event)
    assert refusal.field == ".".join(["data", *map(str, path)])
    assert "NIR" in refusal.reason
    assert not contains_nir(str(refusal))


def test_a_nir_as_a_data_key_is_not_repeated(publisher: Publisher) -> None:
    event = _event()
    event["data"][NIR] = "x"
    refusal = _refused(publisher, event)
    assert refusal.field == "data"
    assert "unknown field" in refusal.reason
    assert NIR not in str(refusal)
    assert not contains_nir(str(refusal))


@pytest.mark.parametrize(("attribute", "field"), [
    ("type", "type"), ("source", "source"), (NIR, "event"), ("extension", "event"),
])
def test_a_nir_in_the_envelope_is_not_repeated(publisher: Publisher, attribute: str,
                                               field: str) -> None:
    event = _event() | {attribute: NIR}
    refusal = _refused(publisher, event)
    assert refusal.field == field
    assert NIR not in str(refusal)
    assert not contains_nir(str(refusal))
    assert attribute == field or attribute not in str(refusal)


def test_refusals_of_the_envelope_repeat_only_catalog_constants(publisher: Publisher) -> None:
    unknown = _refused(publisher, _event() | {"type": "statut_inconnu_xyz"})
    assert "statut_inconnu_xyz" not in str(unknown)
    assert "statut_etudiant_boursier" in str(unknown)
    foreign = _refused(publisher, _event() | {"source": "fournisseur_xyz"})
    assert "fournisseur_xyz" not in str(foreign)
    assert "cnous" in str(foreign)


EVENTS = {dataset_id: _event(dataset_id, seed=7) for dataset_id in DATASETS}
POSITIONS = sorted((dataset_id, path) for dataset_id, event in EVENTS.items()
                   for path in string_paths(event) if path != ("subject",))


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.sampled_from(POSITIONS), spelling=st.sampled_from(SPELLINGS),
       before=st.sampled_from(["", "n° ", "dossier-", "x_"]),
       after=st.sampled_from(["", " ", ".", " fin"]))
def test_a_nir_hidden_in_any_string_is_refused_and_never_repeated(
        publisher: Publisher, position: tuple[str, tuple[Any, ...]], spelling: str,
        before: str, after: str) -> None:
    dataset_id, path = position
    event = copy.deepcopy(EVENTS[dataset_id])
    target = event
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = f"{before}{spelling}{after}"
    refusal = _refused(publisher, event)
    where = ".".join(map(str, path))
    assert _dotted(refusal.field) in (where, "event", "data") or where.startswith(
        _dotted(refusal.field) + "."), (refusal.field, where)
    assert not contains_nir(str(refusal))
    assert spelling not in str(refusal)



def test_a_lone_surrogate_is_a_refused_field_not_a_crash(publisher: Publisher) -> None:
    """JSON may carry ``"\\ud800"``; no Avro writer can encode it, so it is refused by name."""
    event = _event() | {"data": _event()["data"] | {"ville_etudes": "Lyon \ud800"}}
    refusal = _refused(publisher, event)
    assert refusal.field == "data.ville_etudes"
    assert "surrogate" in refusal.reason


# --- any event at all ----------------------------------------------------------------------------

def _deep(depth: int, mapping: bool) -> Any:
    value: Any = NIR
    for _ in range(depth):
        value = {"n": value} if mapping else [value]
    return value


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                     st.integers(min_value=10**20, max_value=10**400))
_CONTAINERS = st.one_of(
    st.recursive(st.one_of(_SCALARS, st.text(max_size=10), st.sampled_from(SPELLINGS)),
                 lambda inner: st.one_of(st.lists(inner, min_size=1, max_size=3),
                                         st.dictionaries(st.text(max_size=10), inner,
                                                         min_size=1, max_size=3)),
                 max_leaves=8).filter(lambda v: isinstance(v, list | dict)),
    st.builds(_deep, st.integers(1, 3000), st.booleans()))
_NOT_TEXT = st.one_of(_SCALARS, _CONTAINERS)
_TEXT = st.one_of(st.text(max_size=30), st.sampled_from(SPELLINGS), st.just("x" * 100_000),
                  st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1,
                          max_size=3))
_PROVIDERS = sorted({p for d in CATALOG.datasets() for p in d.providers})


def _is_array(schema: Any) -> bool:
    branches = schema if isinstance(schema, list) else [schema]
    return any(isinstance(b, dict) and b.get("type") == "array" for b in branches)


@st.composite
def _defect(draw: st.DrawFn, event: dict[str, Any], first: bool) -> frozenset[str]:
    """Make ``event`` wrong in one way drawn here; return the places a refusal may name. Only
    the first may change the dataset (a second change could bring it back)."""
    dataset = CATALOG.dataset(event["type"])
    fields = {f["name"]: f for f in dataset.latest.raw["fields"]}
    kind = draw(st.sampled_from(["unknown attribute", "no attribute", "attribute not text",
                                 "attribute text", "forged source",
                                 *(["other dataset"] if first else []),
                                 "field of the wrong type", "unknown field", "no field",
                                 "field not Unicode"]))
    if kind == "unknown attribute":
        event[draw(st.text(min_size=1).filter(lambda n: n not in _ATTRIBUTES))] = draw(_TEXT)
        return frozenset({"event"})
    if kind == "no attribute":
        name = draw(st.sampled_from(["source", "type", "subject", "data"]))
        event.pop(name, None)
        return frozenset({name})
    if kind == "attribute not text":
        name = draw(st.sampled_from(["id", "source", "type", "subject", "time", "specversion",
                                     "data"]))
        event[name] = draw(_NOT_TEXT if name != "data" else st.one_of(_SCALARS, _TEXT))
        if name == "data" and isinstance(event[name], dict):
            event[name] = [event[name]]
        return frozenset({name})
    if kind == "attribute text":
        name = draw(st.sampled_from(["id", "source", "type", "subject", "time", "specversion"]))
        text = draw(_TEXT)
        event[name] = {"id": text if not EVENT_ID.fullmatch(text) else f"{text}/",
                       "source": f"z{text}", "type": f"z{text}", "subject": f"z{text}",
                       "time": f"x{text}", "specversion": f"1.0{text}x"}[name]
        return frozenset({name})
    if kind == "forged source":
        event["source"] = draw(st.sampled_from([p for p in _PROVIDERS
                                                if p not in dataset.providers]))
        return frozenset({"source"})
    if kind == "other dataset":
        event["type"] = draw(st.sampled_from([d for d in DATASETS if d != dataset.id]))
        return frozenset({"type", "source", "subject", "data"})
    data = event["data"]
    if kind == "unknown field":
        data[draw(st.text(max_size=12).filter(lambda n: n not in fields))] = draw(_TEXT)
    elif kind == "no field":
        name = draw(st.sampled_from([n for n, f in fields.items() if "default" not in f]))
        data.pop(name, None)
    else:
        name = draw(st.sampled_from(sorted(fields)))
        if kind == "field not Unicode":
            data[name] = draw(_TEXT.filter(lambda t: not t.isascii() and any(
                0xD800 <= ord(c) <= 0xDFFF for c in t)))
        else:
            wrong = _SCALARS if _is_array(fields[name]["type"]) else _CONTAINERS
            data[name] = draw(wrong.filter(lambda v: not isinstance(v, list)
                                           or not _is_array(fields[name]["type"])))
    return frozenset({"data"})


def test_any_wrong_event_is_refused_by_place_never_repeating_it(publisher: Publisher) -> None:
    """Generated events of every dataset, each wrong in one to three ways (unknown or missing
    attributes and fields, wrong types, huge texts and numbers, nesting thousands deep, lone
    surrogates, unknown datasets, forged sources): each is refused with a
    :class:`PublishRefused` naming one of the places made wrong, never what it held."""

    @settings(max_examples=hostile_inputs.QUOTAS["published events"], deadline=None,
              database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data(), dataset_id=st.sampled_from(sorted(EVENTS)))
    def one(data: st.DataObject, dataset_id: str) -> None:
        event = copy.deepcopy(EVENTS[dataset_id])
        places: set[str] = set()
        for number in range(data.draw(st.integers(1, 3))):
            kind = event.get("type")
            if not isinstance(event.get("data"), dict) or not (
                    isinstance(kind, str) and kind in EVENTS):  # str() of deep nesting fails
                break
            places |= data.draw(_defect(event, first=number == 0))
        hostile_inputs.tried("published events")
        refusal = _refused(publisher, event)
        assert re.split(r"[.\[]", refusal.field)[0] in places, (refusal.field, places)
        assert len(str(refusal)) < 1000
        assert not contains_nir(str(refusal))

    with hostile_inputs.at_least("published events"):
        one()
