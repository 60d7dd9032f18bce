"""The gateway's ingestion: all or none, each refusal by index and field, each id written once.

The events are prepared by the real :class:`~connectors.publisher.Publisher` (with an in-memory
registry); only the sending is a stand-in, so that Kafka can be made to fail for chosen events
and to answer when the test says. The same paths on the real broker are in
``tests/integration/test_gateway_events.py``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from connectors.gateway.accepted_events import AcceptedEvents
from connectors.gateway.ingestion import Ingestion
from connectors.gateway.problems import Problem
from connectors.publisher import OutgoingEvent, Publisher
from streams.dev.synthetic import generate
from streams.security.principals import provider
from streams.settings import Settings
from tests.unit.command_settings import strong_secret
from tests.unit.connectors.test_publisher import _publisher

CNOUS = provider("cnous")


class Sender:
    """The real ``prepare``; a ``send`` that records what it was handed and fails, or waits,
    for the ids it is told to."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self.sent: list[str] = []
        self.failing: set[str] = set()
        self.gate: asyncio.Event | None = None

    def prepare(self, event: Any) -> OutgoingEvent:
        return self._publisher.prepare(event)

    async def send(self, outgoing: OutgoingEvent) -> asyncio.Future[Any]:
        self.sent.append(outgoing.event_id)
        return asyncio.ensure_future(self._acknowledge(outgoing.event_id))

    async def _acknowledge(self, event_id: str) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if event_id in self.failing:
            raise KafkaTimeoutError


@pytest.fixture
def sender(tmp_path: Path) -> Sender:
    return Sender(_publisher(Settings(cache_dir=tmp_path, subject_secret=strong_secret())))


def _events(count: int, seed: int = 7) -> list[dict[str, Any]]:
    return list(generate("statut_etudiant_boursier", count, seed))


def _refusal(ingestion: Ingestion, events: list[Any], batch: bool = True) -> Problem:
    with pytest.raises(Problem) as refused:
        asyncio.run(ingestion.ingest(CNOUS, events, batch=batch))
    text = json.dumps(refused.value.document().model_dump())
    for event in events:
        if isinstance(event, dict):
            assert str(event.get("subject")) not in text  # the NIR is never repeated
    return refused.value


def test_a_valid_batch_is_written_and_its_ids_returned_in_order(sender: Sender) -> None:
    events = _events(5)
    ingestion = Ingestion(sender, AcceptedEvents(60))
    ids = asyncio.run(ingestion.ingest(CNOUS, events, batch=True))
    assert ids == [e["id"] for e in events]
    assert sorted(sender.sent) == sorted(ids)


def test_a_batch_with_invalid_events_is_refused_whole_naming_each(sender: Sender) -> None:
    events = _events(5)
    events[1] = {**events[1], "data": {**events[1]["data"], "echelon": 99}}
    events[3] = {**events[3], "subject": "123"}
    events[4] = "not an object"
    problem = _refusal(Ingestion(sender, AcceptedEvents(60)), events)
    assert problem.status == 422
    assert [e.field for e in problem.errors] == ["1.data.echelon", "3.subject", "4.event"]
    assert sender.sent == []


def test_an_unknown_dataset_is_refused_naming_type(sender: Sender) -> None:
    event = {**_events(1)[0], "type": "inconnu"}
    problem = _refusal(Ingestion(sender, AcceptedEvents(60)), [event], batch=False)
    assert (problem.status, [e.field for e in problem.errors]) == (422, ["type"])


def test_an_event_without_id_gets_a_fresh_one_on_every_post(sender: Sender) -> None:
    event = _events(1)[0]
    del event["id"]
    ingestion = Ingestion(sender, AcceptedEvents(60))
    first = asyncio.run(ingestion.ingest(CNOUS, [event], batch=False))
    second = asyncio.run(ingestion.ingest(CNOUS, [event], batch=False))
    assert first != second
    assert [str(uuid.UUID(i)) for i in first + second] == first + second
    assert sender.sent == first + second


def test_another_providers_event_refuses_the_batch_with_403(sender: Sender) -> None:
    events = _events(3)
    events[2] = {**events[2], "source": "cnaf"}
    problem = _refusal(Ingestion(sender, AcceptedEvents(60)), events)
    assert problem.status == 403
    assert [e.field for e in problem.errors] == ["2.source"]
    assert sender.sent == []


def test_an_accepted_event_posted_again_is_accepted_without_a_second_send(
        sender: Sender) -> None:
    event = _events(1)[0]
    ingestion = Ingestion(sender, AcceptedEvents(60))
    first = asyncio.run(ingestion.ingest(CNOUS, [event], batch=False))
    again = asyncio.run(ingestion.ingest(CNOUS, [event], batch=False))
    assert first == again == [event["id"]]
    assert sender.sent == [event["id"]]


def test_the_same_id_with_another_content_is_a_conflict(sender: Sender) -> None:
    event = _events(1)[0]
    ingestion = Ingestion(sender, AcceptedEvents(60))
    asyncio.run(ingestion.ingest(CNOUS, [event], batch=False))
    changed = {**event, "data": {**event["data"], "ville_etudes": "Lille"}}
    problem = _refusal(ingestion, [changed], batch=False)
    assert (problem.status, [e.field for e in problem.errors]) == (409, ["id"])
    clash = _refusal(ingestion, [*_events(2, seed=8), changed])
    assert (clash.status, [e.field for e in clash.errors]) == (409, ["2.id"])
    assert sender.sent == [event["id"]]


def test_an_id_twice_in_one_batch(sender: Sender) -> None:
    event = _events(1)[0]
    ingestion = Ingestion(sender, AcceptedEvents(60))
    assert asyncio.run(ingestion.ingest(CNOUS, [event, event], batch=True)) == [event["id"]] * 2
    assert sender.sent == [event["id"]]
    changed = {**event, "time": "2026-09-02T00:00:00Z"}
    problem = _refusal(ingestion, [event, changed])
    assert (problem.status, [e.field for e in problem.errors]) == (409, ["1.id"])


def test_kafka_failing_mid_batch_says_what_was_written_and_a_retry_sends_the_rest(
        sender: Sender) -> None:
    events = _events(3)
    sender.failing = {events[1]["id"]}
    ingestion = Ingestion(sender, AcceptedEvents(60))
    problem = _refusal(ingestion, events)
    assert problem.status == 503
    reasons = {e.field: e.reason for e in problem.errors}
    assert reasons["0.id"] == reasons["2.id"] == "written"
    assert reasons["1.id"].startswith("not acknowledged")
    sender.failing, sender.sent = set(), []
    assert asyncio.run(ingestion.ingest(CNOUS, events, batch=True)) == [e["id"] for e in events]
    assert sender.sent == [events[1]["id"]]


def test_identical_requests_arriving_together_send_once(sender: Sender) -> None:
    events = _events(4)

    async def both() -> list[list[str]]:
        sender.gate = asyncio.Event()
        ingestion = Ingestion(sender, AcceptedEvents(60))
        first = asyncio.create_task(ingestion.ingest(CNOUS, events, batch=True))
        second = asyncio.create_task(ingestion.ingest(CNOUS, events[::-1], batch=True))
        while len(sender.sent) < len(events):  # the first is producing, not acknowledged
            await asyncio.sleep(0)
        for _ in range(3):  # and the second has reached the ids it holds
            await asyncio.sleep(0)
        sender.gate.set()
        return await asyncio.gather(first, second)

    first, second = asyncio.run(both())
    assert first == second[::-1] == [e["id"] for e in events]
    assert sorted(sender.sent) == sorted(e["id"] for e in events)

