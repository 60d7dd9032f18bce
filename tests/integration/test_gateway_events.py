"""``POST /v1/events`` on a real gateway (``circulation api``) and the real broker and registry.

What a provider's batch system sees: an accepted event on its provider topic with the NIR
replaced by the subject reference, a refused one naming its field and written nowhere, a
duplicate answered again without a second record, oversize bodies and batches, tokens missing,
wrong or not a provider's, another provider's dataset, and readiness as the registry comes and
goes. Every check of a topic is limited to this run's event ids (fresh seeds) and to the
records written between offsets taken around it.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from streams.dev.synthetic import generate
from streams.privacy.secret import subject_secret
from streams.settings import Settings
from tests.conftest import Services
from tests.integration.gateway_process import (
    CLI,
    TcpRelay,
    gateway_environment,
    running_gateway,
)
from tests.integration.test_publish import (
    BOURSIER_TOPIC,
    event_id_of,
    expected_reference,
    offsets_of_topics,
    read_between,
    record_bytes,
)

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
MAX_BODY = 65_536
MAX_BATCH = 20
PARTIES = ("provider.cnous", "provider.cnaf", "subscriber.ville-de-lyon")


@pytest.fixture(scope="module")
def tokens(services: Services) -> dict[str, str]:
    """A token for each party, made as the README says (``circulation credentials create
    PRINCIPAL --token``, printed once as ``{"principal", "token"}``), before the gateway
    starts."""
    made = {}
    for name in PARTIES:
        run = subprocess.run([*CLI, "credentials", "create", name, "--token"],
                             env=gateway_environment(services), capture_output=True, text=True,
                             timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        printed = json.loads(run.stdout)
        assert set(printed) == {"principal", "token"}
        assert printed["principal"] == name
        made[name] = printed["token"]
    return made


@pytest.fixture(scope="module")
def gateway(services: Services, tokens: dict[str, str]) -> Iterator[str]:
    environment = gateway_environment(
        services, CIRCULATION_GATEWAY_MAX_BODY_BYTES=str(MAX_BODY),
        CIRCULATION_GATEWAY_MAX_BATCH_EVENTS=str(MAX_BATCH))
    with running_gateway(environment) as url:
        yield url


@pytest.fixture
async def client(gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
        yield http


def _boursiers(count: int) -> list[dict[str, Any]]:
    return list(generate("statut_etudiant_boursier", count,
                         random.SystemRandom().randrange(2**31)))


def _as(tokens: dict[str, str], party: str, media_type: str = SINGLE) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[party]}", "Content-Type": media_type}


async def _records_of(settings: Settings, ids: set[str], post: Any) -> list[Any]:
    """The records carrying ``ids`` that were written to the boursier topic while ``post``
    ran."""
    before = await offsets_of_topics(settings, [BOURSIER_TOPIC])
    await post()
    after = await offsets_of_topics(settings, [BOURSIER_TOPIC])
    return [r for r in await read_between(settings.kafka_bootstrap, before, after)
            if event_id_of(r) in ids]


def _never_repeats(answer: httpx.Response, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in answer.text


async def test_an_accepted_event_is_written_once_with_its_subject_referenced(
        settings: Settings, client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    event = _boursiers(1)[0]
    answers: list[httpx.Response] = []

    async def post_twice() -> None:
        for _ in range(2):
            answers.append(await client.post("/v1/events", content=json.dumps(event),
                                             headers=_as(tokens, "provider.cnous")))

    records = await _records_of(settings, {event["id"]}, post_twice)
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json() == answers[1].json() == {"accepted": [event["id"]]}
    assert len(records) == 1  # the duplicate was answered, not written
    reference = expected_reference(subject_secret(settings).get_secret_value(),
                                   event["subject"])
    assert records[0].key == reference.encode()
    assert dict(records[0].headers)["ce_subject"] == reference.encode()
    assert not any(event["subject"].encode() in part for part in record_bytes(records[0]))


async def test_a_batch_is_written_whole_in_order(
        settings: Settings, client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    events = _boursiers(5)
    answer: list[httpx.Response] = []

    async def post() -> None:
        answer.append(await client.post("/v1/events", content=json.dumps(events),
                                        headers=_as(tokens, "provider.cnous", BATCH)))

    records = await _records_of(settings, {e["id"] for e in events}, post)
    assert answer[0].status_code == 202
    assert answer[0].json() == {"accepted": [e["id"] for e in events]}
    assert sorted(event_id_of(r) for r in records) == sorted(e["id"] for e in events)


async def test_a_refused_event_names_its_field_and_its_batch_writes_nothing(
        settings: Settings, client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    events = _boursiers(4)
    events[1] = {**events[1], "data": {**events[1]["data"], "echelon": 99}}
    events[3] = {**events[3], "id": events[3]["subject"]}  # a NIR hidden in the id
    answers: list[httpx.Response] = []

    async def post() -> None:
        answers.append(await client.post("/v1/events", content=json.dumps(events),
                                         headers=_as(tokens, "provider.cnous", BATCH)))
        answers.append(await client.post("/v1/events", content=json.dumps(events[1]),
                                         headers=_as(tokens, "provider.cnous")))

    records = await _records_of(settings, {e["id"] for e in events}, post)
    assert records == []
    batch, single = answers
    assert (batch.status_code, batch.headers["content-type"]) == (422, "application/problem+json")
    assert [e["field"] for e in batch.json()["errors"]] == ["1.data.echelon", "3.id"]
    assert (single.status_code, [e["field"] for e in single.json()["errors"]]) == (
        422, ["data.echelon"])
    for answer in answers:
        _never_repeats(answer, *(e["subject"] for e in events))


async def test_an_id_accepted_with_another_content_is_a_conflict(
        settings: Settings, client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    event = _boursiers(1)[0]
    changed = {**event, "data": {**event["data"], "ville_etudes": "Brest"}}
    answers: list[httpx.Response] = []

    async def post() -> None:
        for body in (event, changed):
            answers.append(await client.post("/v1/events", content=json.dumps(body),
                                             headers=_as(tokens, "provider.cnous")))

    records = await _records_of(settings, {event["id"]}, post)
    assert [a.status_code for a in answers] == [202, 409]
    assert [e["field"] for e in answers[1].json()["errors"]] == ["id"]
    assert len(records) == 1


async def test_oversize_bodies_and_batches_are_refused_unwritten(
        settings: Settings, client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    events = _boursiers(MAX_BATCH + 1)
    padded = {**events[0], "data": {**events[0]["data"], "ville_etudes": "x" * MAX_BODY}}
    answers: list[httpx.Response] = []

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
        body = json.dumps(padded).encode()
        for start in range(0, len(body), 4096):
            yield body[start:start + 4096]

    async def post() -> None:
        answers.append(await client.post("/v1/events", content=json.dumps(padded),
                                         headers=_as(tokens, "provider.cnous")))
        answers.append(await client.post("/v1/events", content=chunks(),
                                         headers=_as(tokens, "provider.cnous")))
        answers.append(await client.post("/v1/events", content=json.dumps(events),
                                         headers=_as(tokens, "provider.cnous", BATCH)))

    records = await _records_of(settings, {e["id"] for e in events}, post)
    assert [a.status_code for a in answers] == [413, 413, 413]
    assert [a.json()["errors"][0]["field"] for a in answers] == ["body"] * 3
    assert records == []


async def test_a_missing_or_unknown_token_is_401(client: httpx.AsyncClient,
                                                 tokens: dict[str, str]) -> None:
    event = json.dumps(_boursiers(1)[0])
    wrong = tokens["provider.cnous"][:-4] + "AAAA"
    missing = await client.post("/v1/events", content=event, headers={"Content-Type": SINGLE})
    unknown = await client.post("/v1/events", content=event, headers={
        "Content-Type": SINGLE, "Authorization": f"Bearer {wrong}"})
    assert [missing.status_code, unknown.status_code] == [401, 401]
    assert missing.headers["www-authenticate"] == "Bearer"
    assert unknown.headers["www-authenticate"].startswith("Bearer")
    _never_repeats(unknown, wrong)


async def test_another_providers_dataset_and_a_subscribers_token_are_403(
        settings: Settings, client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    quotient = next(iter(generate("quotient_familial", 1, random.SystemRandom().randrange(99))))
    boursier = _boursiers(1)[0]
    answers: list[httpx.Response] = []

    async def post() -> None:
        for party, event in (("provider.cnous", quotient), ("provider.cnaf", boursier),
                             ("subscriber.ville-de-lyon", boursier)):
            answers.append(await client.post("/v1/events", content=json.dumps(event),
                                             headers=_as(tokens, party)))

    records = await _records_of(settings, {boursier["id"]}, post)
    assert [a.status_code for a in answers] == [403, 403, 403]
    assert [e["field"] for e in answers[0].json()["errors"]] == ["source"]
    assert "provider.cnous" in answers[0].json()["errors"][0]["reason"]
    assert "subscriber.ville-de-lyon" in answers[2].json()["detail"]
    assert records == []


async def test_wrong_media_type_malformed_and_deeply_nested_bodies(
        client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    event = _boursiers(1)[0]
    headers = _as(tokens, "provider.cnous")
    wrong_type = await client.post("/v1/events", content=json.dumps(event),
                                   headers={**headers, "Content-Type": "application/json"})
    malformed = await client.post("/v1/events", content=json.dumps(event)[:-5], headers=headers)
    not_utf8 = await client.post("/v1/events", content=b'{"id": "\xff"}', headers=headers)
    not_a_batch = await client.post("/v1/events", content=json.dumps(event), headers={
        **headers, "Content-Type": BATCH})
    deep = "[" * 30_000 + "]" * 30_000  # within the body limit
    too_deep = await client.post("/v1/events", content=deep, headers=headers)
    nested = {**event, "data": {**event["data"], "ville_etudes": json.loads(
        "[" * 500 + "]" * 500)}}
    deep_data = await client.post("/v1/events", content=json.dumps(nested), headers=headers)
    assert (wrong_type.status_code, wrong_type.json()["errors"][0]["field"]) == (
        415, "Content-Type")
    assert (malformed.status_code, malformed.json()["errors"][0]["field"]) == (400, "body")
    assert (not_utf8.status_code, not_utf8.json()["errors"][0]["field"]) == (400, "body")
    assert (not_a_batch.status_code, not_a_batch.json()["errors"][0]["field"]) == (422, "body")
    assert (too_deep.status_code, too_deep.json()["errors"][0]["reason"]) == (
        400, "nested too deeply")
    assert deep_data.status_code == 422
    assert deep_data.json()["errors"][0]["field"].startswith("data.ville_etudes")
    assert (await client.get("/healthz")).status_code == 200


async def test_readyz_follows_the_registry(services: Services, tokens: dict[str, str]) -> None:
    """Through a relay to the registry that the test cuts, as a network fault would."""
    registry = urlsplit(services.registry_url)
    assert registry.hostname is not None
    assert registry.port is not None
    with TcpRelay(registry.hostname, registry.port) as relay:
        relayed = services.registry_url.replace(f":{registry.port}/", f":{relay.port}/", 1)
        environment = gateway_environment(services, CIRCULATION_SCHEMA_REGISTRY_URL=relayed)
        with running_gateway(environment) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                ready = await http.get("/readyz")
                relay.cut()
                cut = await http.get("/readyz")
                alive = await http.get("/healthz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert cut.status_code == 503
    assert [e["field"] for e in cut.json()["errors"]] == ["schema_registry"]
    assert alive.status_code == 200


async def test_the_window_is_each_replicas_own(
        services: Services, settings: Settings, gateway: str, tokens: dict[str, str]) -> None:
    """As the README says: a retry that reaches another replica is written again, same id."""
    event = _boursiers(1)[0]
    answers: list[httpx.Response] = []

    async def post_to_each() -> None:
        with running_gateway(gateway_environment(services)) as other:
            for url in (gateway, other):
                async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                    answers.append(await http.post("/v1/events", content=json.dumps(event),
                                                   headers=_as(tokens, "provider.cnous")))

    records = await _records_of(settings, {event["id"]}, post_to_each)
    assert [a.status_code for a in answers] == [202, 202]
    assert len(records) == 2
    assert records[0].key == records[1].key
