"""Publishing, end to end on the real broker and registry, read back as any Kafka user would.

The file path: ``circulation generate`` for every dataset of the catalog, a few bad lines mixed
in, ``circulation publish FILE``. The records are then read with a *plain* Confluent wire-format
decoder (:mod:`tests.integration.plain_consumer`: the registry's ``/schemas/ids/{id}``, fastavro):
none of the project's codec or CloudEvents code is used to read them, since the point is that a
standard consumer can. Provider topics are shared between runs, so every check is limited to the
records written between the end offsets taken before publishing and those taken after, and to
the event ids this run generated (from a seed drawn per run).

The Python path: ``Publisher.publish`` round trip, and ``prepare``/``publish`` refusing bad input
with the culprit field, without producing anything for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import random
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from connectors.publisher import Publisher, PublishRefused
from schemas.catalog import Catalog
from schemas.identifiers import nir_key
from schemas.registration import dataset_subjects, register_versions
from schemas.registry import SchemaRegistry
from streams.dev.synthetic import generate
from streams.kafka.admin import ensure_topics
from streams.kafka.topics import spec
from streams.privacy.secret import bus_secret
from streams.settings import Settings
from tests.conftest import Services
from tests.integration.plain_consumer import PlainDecoder, json_form

CLI = [sys.executable, "-m", "streams.cli"]
CATALOG = Catalog.load()
PER_DATASET = 25
REFERENCE = re.compile(r"sr1_[0-9a-f]{64}")
SUBJECT_DOMAIN = b"circulation/subject/v1/"
BOURSIER_TOPIC = "provider.cnous.statut_etudiant_boursier"
ALL_PROVIDER_TOPICS = sorted(
    CATALOG.topic_for(provider, dataset.id)
    for dataset in CATALOG.datasets()
    for provider in dataset.providers
)

Offsets = dict[TopicPartition, int]


class Record(Protocol):
    """What these tests read of an aiokafka ``ConsumerRecord`` (bytes keys and values)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


def contains_date(value: Any) -> bool:
    if isinstance(value, dict):
        return any(contains_date(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_date(v) for v in value)
    return isinstance(value, date)


def with_defaults(data: Mapping[str, Any], writer: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` plus the writer schema's default for each top-level field it leaves out."""
    filled = dict(data)
    for field in writer["fields"]:
        if field["name"] not in filled:
            assert "default" in field, f"{field['name']} is missing and has no default"
            filled[field["name"]] = field["default"]
    return filled


def expected_reference(secret: str, nir: str) -> str:
    """The documented construction: ``sr1_`` + hex HMAC-SHA256(secret, domain + NIR)."""
    mac = hmac.new(secret.encode(), SUBJECT_DOMAIN + nir.encode(), hashlib.sha256)
    return "sr1_" + mac.hexdigest()


def record_bytes(record: Record) -> Iterable[bytes]:
    """Every byte string a record carries: key, value and header values."""
    yield record.key or b""
    yield record.value or b""
    for _, header in record.headers:
        yield header


def event_id_of(record: Record) -> str:
    header: bytes = dict(record.headers).get("ce_id", b"")
    return header.decode()


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> Offsets:
    """The end offset of every partition of ``topics`` (which must exist)."""
    names = list(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    partitions = [TopicPartition(t["topic"], p["partition"])
                  for t in described for p in t["partitions"]]
    assert {tp.topic for tp in partitions} == set(names), "a topic has no partitions"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def read_between(bootstrap: str, start: Offsets, end: Offsets,
                       timeout: float = 30) -> list[Record]:
    """Every record from ``start`` (inclusive) to ``end`` (exclusive), partition by partition."""
    wanted = {tp: offset for tp, offset in end.items() if offset > start.get(tp, 0)}
    if not wanted:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                key_deserializer=None, value_deserializer=None)
    await consumer.start()
    records: list[Record] = []
    try:
        consumer.assign(list(wanted))
        for tp in wanted:
            consumer.seek(tp, start.get(tp, 0))
        deadline = asyncio.get_running_loop().time() + timeout
        while wanted:
            assert asyncio.get_running_loop().time() < deadline, f"still waiting for {wanted}"
            batches = await consumer.getmany(*wanted, timeout_ms=500)
            for tp, batch in batches.items():
                records += [r for r in batch if r.offset < wanted.get(tp, 0)]
            for tp in list(wanted):
                if await consumer.position(tp) >= wanted[tp]:
                    del wanted[tp]
    finally:
        await consumer.stop()
    return records


async def offsets_of_topics(settings: Settings, topics: list[str]) -> Offsets:
    """Make sure the topics exist (as the publisher creates them), then take their end offsets."""
    await ensure_topics(settings, [spec(settings, t) for t in topics])
    return await end_offsets(settings.kafka_bootstrap, topics)


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def cli_env(services: Services) -> dict[str, str]:
    return {**os.environ, "CIRCULATION_KAFKA_BOOTSTRAP": services.bootstrap,
            "CIRCULATION_SCHEMA_REGISTRY_URL": services.registry_url, "COLUMNS": "200"}


@pytest.fixture
def decoder(services: Services) -> Iterator[PlainDecoder]:
    plain = PlainDecoder(services.registry_url)
    yield plain
    plain.close()


@pytest.fixture(scope="module")
def registered_catalog(services: Services) -> None:
    """The catalog registered before anything is published, as an operator does first.

    (Publishing first on a fresh registry leaves the subjects' versions out of order: see
    ``test_registration.test_publishing_before_registration_keeps_version_order``.)
    """
    with SchemaRegistry(services.registry_url) as registry:
        for subject, versions in dataset_subjects(CATALOG):
            register_versions(registry, subject, versions)


@pytest.fixture
def seed() -> int:
    """A fresh seed per run, so that this run's event ids are its own on shared topics."""
    return random.SystemRandom().randrange(2**31)


# --- the file path: generate, publish, read back ------------------------------------------------


def _generated(dataset_ids: list[str], seed: int, env: dict[str, str]) -> list[str]:
    """``circulation generate`` for each dataset (in parallel), concatenated."""
    runs = [
        subprocess.Popen([*CLI, "generate", d, "--count", str(PER_DATASET), "--seed", str(seed)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for d in dataset_ids
    ]
    lines: list[str] = []
    for dataset_id, run in zip(dataset_ids, runs, strict=True):
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, f"generate {dataset_id} failed: {err}"
        produced = out.splitlines()
        assert len(produced) == PER_DATASET, f"generate {dataset_id}: {len(produced)} lines"
        lines += produced
    return lines


def _wrong_nir_key(nir: str) -> str:
    right = nir_key(nir[:13])
    return f"{nir[:13]}{right % 97 + 1:02d}"


def _bad_lines(seed: int) -> list[tuple[str, str, str | None]]:
    """(line, field the refusal must name, the event id it carries) for each bad line."""
    boursier = [dict(e) for e in generate("statut_etudiant_boursier", 4, seed + 1)]
    qf = next(iter(generate("quotient_familial", 1, seed + 1)))
    company = next(iter(generate("attestation_vigilance", 1, seed + 1)))
    bad: list[tuple[str, str, str | None]] = []

    def add(event: dict[str, Any], field: str) -> None:
        event["id"] = str(uuid.uuid4())
        bad.append((json.dumps(event, ensure_ascii=False), field, event["id"]))

    add({**boursier[0], "subject": _wrong_nir_key(boursier[0]["subject"])}, "subject")
    add({**boursier[1], "data": {**boursier[1]["data"], "champ_inconnu": 1}},
        "data")
    add({**qf, "source": "cnous"}, "source")
    add({**boursier[2], "data": {**boursier[2]["data"], "date_debut_droits": "2026-02-30"}},
        "data.date_debut_droits")
    add({**company, "subject": company["subject"][:8] + str((int(company["subject"][8]) + 1) % 10)},
        "subject")
    not_json_id = str(uuid.uuid4())
    bad.append((f'{{"id": "{not_json_id}", "source": "cnous", oops', "line", not_json_id))
    return bad


@pytest.mark.usefixtures("registered_catalog")
async def test_publish_file_of_every_dataset_with_bad_lines(
    settings: Settings, cli_env: dict[str, str], decoder: PlainDecoder, seed: int,
    tmp_path: Path,
) -> None:
    valid = _generated([d.id for d in CATALOG.datasets()], seed, cli_env)
    events = [json.loads(line) for line in valid]
    bad = _bad_lines(seed)
    # Bad lines at the start, in the middle and at the end of the file.
    lines = list(valid)
    positions = [0, 7, len(lines) // 2, len(lines) // 2 + 1, len(lines) - 3, len(lines) + 5]
    expected_refusals: dict[int, str] = {}
    for position, (line, _, _) in zip(positions, bad, strict=True):
        lines.insert(position, line)
    for number, line in enumerate(lines, start=1):
        for bad_line, field, _ in bad:
            if line == bad_line:
                expected_refusals[number] = field
    assert len(expected_refusals) == len(bad)
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")

    before = await offsets_of_topics(settings, ALL_PROVIDER_TOPICS)
    run = subprocess.run([*CLI, "publish", str(source)], env=cli_env, capture_output=True,
                         text=True, timeout=120, check=False)
    after = await end_offsets(settings.kafka_bootstrap, ALL_PROVIDER_TOPICS)
    context = f"seed={seed}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"

    # The command's verdict: exit 1, the counts, one refusal line per bad line.
    assert run.returncode == 1, context
    published = re.search(r"published\W+(\d+)", run.stdout)
    refused = re.search(r"refused\W+(\d+)", run.stdout)
    assert published, context
    assert int(published[1]) == len(valid), context
    assert refused, context
    assert int(refused[1]) == len(bad), context
    refusal_lines = [ln for ln in run.stderr.splitlines() if ln.startswith("line ")]
    assert len(refusal_lines) == len(bad), context
    for number, field in expected_refusals.items():
        pattern = re.compile(rf"^line {number}: {re.escape(field)}: \S")
        assert any(pattern.match(ln) for ln in refusal_lines), f"line {number}/{field}\n{context}"

    nirs = {e["subject"] for e in events if e["type"] in _person_datasets()}
    nirs |= {json.loads(line)["subject"] for line, _, _ in bad[:-1]
             if json.loads(line)["type"] in _person_datasets()}
    assert len(nirs) > len(_person_datasets())
    for nir in nirs:
        assert nir not in run.stdout + run.stderr, "a NIR was echoed by publish"

    # Read back every record written meanwhile, with the plain decoder.
    records = await read_between(settings.kafka_bootstrap, before, after)
    ours = {event_id_of(r): r for r in records if event_id_of(r) in {e["id"] for e in events}}
    assert sum(event_id_of(r) in ours for r in records) == len(events), "missing or duplicated"
    assert set(ours) == {e["id"] for e in events}

    secret = bus_secret(settings).get_secret_value()
    latest_ids: dict[str, int] = {}
    for event in events:
        record = ours[event["id"]]
        dataset = CATALOG.dataset(event["type"])
        topic = f"provider.{event['source']}.{event['type']}"
        assert record.topic == topic
        headers = dict(record.headers)
        assert len(headers) == len(record.headers), "a header is repeated"
        assert headers["ce_specversion"] == b"1.0"
        assert headers["ce_id"] == event["id"].encode()
        assert headers["ce_source"] == event["source"].encode()
        assert headers["ce_type"] == event["type"].encode()
        assert headers["content-type"] == b"application/avro"
        assert (datetime.fromisoformat(headers["ce_time"].decode())
                == datetime.fromisoformat(event["time"]))
        assert headers["ce_subject"] == record.key
        key = (record.key or b"").decode()
        if dataset.subject_kind == "person":
            assert REFERENCE.fullmatch(key), key
            assert key == expected_reference(secret, event["subject"])
        else:
            assert key == event["subject"]

        schema_id, datum = decoder.decode(record.value or b"")
        if topic not in latest_ids:
            latest_ids[topic] = decoder.latest_id(f"{topic}-value")
        assert schema_id == latest_ids[topic], "not written with the subject's latest schema"
        writer, _ = decoder.writer(schema_id)
        assert writer["circulation"]["dataset"] == event["type"]
        assert writer["circulation"]["version"] == dataset.latest.version
        if event["type"] == "statut_etudiant_boursier":
            assert isinstance(datum["date_debut_droits"], date)
        assert contains_date(datum) == contains_date(_as_dates(event["data"]))
        assert json_form(datum) == with_defaults(event["data"], writer)

    # Same NIR, same reference: the generated population repeats some persons across datasets
    # or not, but the key is a function of the NIR alone.
    by_nir: dict[str, set[bytes | None]] = {}
    for event in events:
        if event["subject"] in nirs:
            by_nir.setdefault(event["subject"], set()).add(ours[event["id"]].key)
    assert all(len(keys) == 1 for keys in by_nir.values())

    # No raw NIR anywhere, and no refused event on any provider topic.
    refused_ids = {event_id.encode() for _, _, event_id in bad if event_id}
    nir_bytes = {nir.encode() for nir in nirs}
    for record in records:
        for blob in record_bytes(record):
            for nir in nir_bytes:
                assert nir not in blob, f"raw NIR found in {record.topic}@{record.offset}"
            for event_id in refused_ids:
                assert event_id not in blob, f"refused event in {record.topic}@{record.offset}"


def _person_datasets() -> set[str]:
    return {d.id for d in CATALOG.datasets() if d.subject_kind == "person"}


def _as_dates(data: Any) -> Any:
    """Turn ``YYYY-MM-DD`` strings into dates (to tell whether a payload has any)."""
    if isinstance(data, dict):
        return {k: _as_dates(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_as_dates(v) for v in data]
    if isinstance(data, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", data):
        return date.fromisoformat(data)
    return data


# --- the Python API -----------------------------------------------------------------------------


def _boursier(seed: int, **data: Any) -> dict[str, Any]:
    event = next(iter(generate("statut_etudiant_boursier", 1, seed)))
    event["id"] = str(uuid.uuid4())
    event["data"] = {**event["data"], **data}
    return event


@pytest.mark.usefixtures("registered_catalog")
async def test_publisher_round_trip(settings: Settings, decoder: PlainDecoder, seed: int) -> None:
    with_amount = _boursier(seed, montant_annuel_centimes=512_300)
    without_id = _boursier(seed + 1)
    del without_id["id"]
    before = await offsets_of_topics(settings, [BOURSIER_TOPIC])
    async with Publisher(settings) as publisher:
        first = await publisher.publish(with_amount)
        second = await publisher.publish(without_id)
    after = await end_offsets(settings.kafka_bootstrap, [BOURSIER_TOPIC])

    assert first == with_amount["id"]
    assert uuid.UUID(second).version == 4, "an event without id gets a fresh UUID"
    records = {event_id_of(r): r for r in
               await read_between(settings.kafka_bootstrap, before, after)}
    assert {first, second} <= set(records)
    secret = bus_secret(settings).get_secret_value()
    for event_id, event in ((first, with_amount), (second, without_id)):
        record = records[event_id]
        assert record.key == expected_reference(secret, event["subject"]).encode()
        assert dict(record.headers)["ce_subject"] == record.key
        _, datum = decoder.decode(record.value or b"")
        expected = {"montant_annuel_centimes": None, **event["data"]}
        assert json_form(datum) == expected
    assert json_form(decoder.decode(records[first].value or b"")[1])[
        "montant_annuel_centimes"] == 512_300


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting ``value`` at a dotted path (``data.echelon``)."""
    def mutate(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = event
        for part in parents:
            target = target[part]
        target[last] = value
    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = event
        for part in parents:
            target = target[part]
        del target[last]
    return mutate


def _wrong_key(event: dict[str, Any]) -> None:
    event["subject"] = _wrong_nir_key(event["subject"])


def _spaced_wrong_key(event: dict[str, Any]) -> None:
    nir = _wrong_nir_key(event["subject"])
    parts = (nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:])
    event["subject"] = " ".join(parts)


REFUSALS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "wrong NIR key": (_wrong_key, "subject"),
    "spaced NIR, wrong key": (_spaced_wrong_key, "subject"),
    "SIREN for a person": (_set("subject", "732829320"), "subject"),
    "provider not allowed": (_set("source", "cnaf"), "source"),
    "unknown dataset": (_set("type", "statut_etudiant_boursiere"), "type"),
    "unknown data field": (_set("data.champ_inconnu", 1), "data"),
    "missing data field": (_drop("data.ville_etudes"), "data.ville_etudes"),
    "impossible date": (_set("data.date_fin_droits", "2027-02-30"), "data.date_fin_droits"),
    "date of wrong shape": (_set("data.date_fin_droits", "30/06/2027"), "data.date_fin_droits"),
    "pattern": (_set("data.echelon", "8"), "data.echelon"),
    "minimum": (_set("data.montant_annuel_centimes", -1), "data.montant_annuel_centimes"),
    "enum": (_set("data.statut", "annule"), "data.statut"),
    "wrong type": (_set("data.est_boursier", "oui"), "data.est_boursier"),
    "naive time": (_set("time", "2026-09-01T10:00:00"), "time"),
    "unknown attribute": (_set("extension", "x"), "event"),
    "spec version": (_set("specversion", "0.3"), "specversion"),
    "missing source": (_drop("source"), "source"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_prepare_refuses_with_the_field(settings: Settings, seed: int, case: str) -> None:
    mutate, field = REFUSALS[case]
    event = _boursier(seed)
    nir = event["subject"]
    mutate(event)
    publisher = Publisher(settings)
    with pytest.raises(PublishRefused) as refused:
        publisher.prepare(event)
    assert refused.value.field == field, str(refused.value)
    assert refused.value.reason
    assert nir[:13] not in str(refused.value)
    assert str(event.get("subject", ""))[:13] not in str(refused.value)


@pytest.mark.usefixtures("registered_catalog")
async def test_prepare_checks_against_the_requested_version(settings: Settings, seed: int) -> None:
    event = _boursier(seed, montant_annuel_centimes=100)
    publisher = Publisher(settings)
    assert publisher.prepare(event).topic == BOURSIER_TOPIC  # latest (v2) knows the field
    with pytest.raises(PublishRefused) as refused:
        publisher.prepare(event, version=1)
    assert refused.value.field == "data"
    assert refused.value.reason.startswith("an unknown field (known: est_boursier, ")
    assert "montant_annuel_centimes" not in refused.value.reason


@pytest.mark.usefixtures("registered_catalog")
async def test_refused_events_are_never_produced(settings: Settings, seed: int) -> None:
    bad = []
    for offset, (mutate, _) in enumerate(REFUSALS.values()):
        event = _boursier(seed + offset)
        mutate(event)
        bad.append(event)
    sentinel = _boursier(seed, montant_annuel_centimes=1)
    before = await offsets_of_topics(settings, [BOURSIER_TOPIC])
    async with Publisher(settings) as publisher:
        for event in bad:
            with pytest.raises(PublishRefused):
                publisher.prepare(event)
            with pytest.raises(PublishRefused):
                await publisher.publish(event)
        await publisher.publish(sentinel)
        await publisher.flush()
    after = await end_offsets(settings.kafka_bootstrap, [BOURSIER_TOPIC])
    records = await read_between(settings.kafka_bootstrap, before, after)
    assert sentinel["id"] in {event_id_of(r) for r in records}
    refused_ids = {e["id"].encode() for e in bad}
    for record in records:
        for blob in record_bytes(record):
            assert not any(event_id in blob for event_id in refused_ids)
