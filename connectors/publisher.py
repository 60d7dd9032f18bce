"""Publishing change events: the provider's way in, from code or from a JSON-lines file.

Every event is checked before anything is sent: the provider may publish the dataset, the subject
is a valid NIR or SIREN, the data fits the dataset's schema, and no NIR hides anywhere else (the
id, a free-text field). The person's NIR is replaced here, at the edge, by its subject
reference, so no raw NIR reaches any topic. A refusal names the field, never what it held.
Valid events are encoded in Avro (Confluent wire format, schema registered under
``<topic>-value``) and sent with the CloudEvents Kafka binding; refused ones never reach Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
from aiokafka import AIOKafkaProducer

from schemas.catalog import Catalog, Dataset, NotPublishedBy, SchemaVersion, UnknownDataset
from schemas.cloudevent import PublishedEvent, kafka_headers, to_kafka
from schemas.codec import ValidationError, from_json
from schemas.constraints import company_identifier_paths
from schemas.identifiers import InvalidIdentifier
from schemas.nir_detection import TooDeep, nir_locations
from schemas.registration import register_versions, value_subject
from schemas.registry import RegistryRefused, SchemaRegistry
from schemas.serde import AvroSerde
from streams.kafka import clients
from streams.kafka.admin import ensure_topics
from streams.kafka.topics import spec
from streams.privacy.pseudonyms import SubjectReferences
from streams.privacy.secret import subject_secret
from streams.settings import Settings

PUBLISH_LINGER_MS = 5
"""How long an event may wait for others to share its produce request: Kafka's own default
since 4.0. Each millisecond here is one more in the publish-to-delivery latency; a bulk publish
still fills its batches well before."""


class PublishRefused(ValueError):
    """An event the bus will not accept; ``field`` names the culprit, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class OutgoingEvent:
    """A validated, pseudonymised, encoded event, ready to be produced."""

    event_id: str
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


_ATTRIBUTES = ", ".join(PublishedEvent.model_fields)
NIR_REASON = "holds what looks like a NIR: a person's number may only be the event's subject"


def _pydantic_refusal(error: pydantic.ValidationError) -> PublishRefused:
    """The first problem, by field path; pydantic's message, never the offending value, nor an
    unknown attribute's name (it is the provider's input, and may be anything)."""
    first = error.errors(include_input=False)[0]
    if first["type"] == "extra_forbidden":
        return PublishRefused("event", f"an unknown attribute (known: {_ATTRIBUTES})")
    field = ".".join(str(part) for part in first["loc"]) or "event"
    return PublishRefused(field, first["msg"])


def provider_topic(catalog: Catalog, source: str, dataset_id: str) -> str:
    """The provider topic of ``dataset_id`` published by ``source``; a refusal names the
    catalog's datasets or publishers, never what the provider wrote."""
    try:
        return catalog.topic_for(source, dataset_id)
    except UnknownDataset:
        known = ", ".join(d.id for d in catalog.datasets())
        raise PublishRefused("type", f"unknown dataset (known: {known})") from None
    except NotPublishedBy:
        publishers = ", ".join(catalog.dataset(dataset_id).providers)
        raise PublishRefused("source", f"this provider does not publish {dataset_id} "
                                       f"(published by: {publishers})") from None


class Publisher:
    """Validates and sends a provider's events; use ``async with Publisher(settings)``.

    It reads the subject secret only (a provider must not hold what keys subscribers'
    pseudonyms); :class:`~streams.privacy.secret.SecretRefused` when that one is refused.
    """

    def __init__(self, settings: Settings, catalog: Catalog | None = None,
                 registry: SchemaRegistry | None = None) -> None:
        self.settings = settings
        self.catalog = catalog or Catalog.load()
        self.registry = registry or clients.schema_registry(settings)
        self._references = SubjectReferences(subject_secret(settings))
        self._serde = AvroSerde(self.registry)
        self._registered: set[str] = set()
        self._unscanned: dict[tuple[str, int], frozenset[str]] = {}
        self._topics_ready: set[str] = set()
        self._sender: AIOKafkaProducer | None = None

    @property
    def _producer(self) -> AIOKafkaProducer:
        if self._sender is None:
            raise RuntimeError("use the publisher as `async with Publisher(...)` to send")
        return self._sender

    async def __aenter__(self) -> Publisher:
        self._sender = clients.producer(
            self.settings, linger_ms=PUBLISH_LINGER_MS, max_batch_size=512 * 1024,
        )
        await self._sender.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._producer.stop()
        self._sender = None

    def prepare(self, event: Mapping[str, Any] | PublishedEvent,
                version: int | None = None) -> OutgoingEvent:
        """Check and encode one event; :class:`PublishRefused` names what is wrong."""
        try:
            published = (event if isinstance(event, PublishedEvent)
                         else PublishedEvent.model_validate(event))
        except pydantic.ValidationError as exc:
            raise _pydantic_refusal(exc) from None
        topic = self._topic(published)
        dataset = self.catalog.dataset(published.type)
        schema = dataset.version(version) if version is not None else dataset.latest
        try:
            reference = self._references.reference(published.subject, dataset.subject_kind)
            datum = from_json(schema.parsed, published.data)
        except (InvalidIdentifier, ValidationError) as exc:
            raise PublishRefused(exc.field, exc.reason) from None
        self._refuse_hidden_nirs(published, dataset, schema)
        self._register(topic, dataset, schema)
        value = self._serde.encode_datum(value_subject(topic), schema, datum)
        attributes = {"id": published.id, "source": published.source, "type": published.type,
                      "subject": reference, "time": published.time}
        message = to_kafka(attributes, value, key=reference)
        return OutgoingEvent(published.id, topic, reference.encode(), value,
                             kafka_headers(message))

    def _topic(self, event: PublishedEvent) -> str:
        return provider_topic(self.catalog, event.source, event.type)

    def _refuse_hidden_nirs(self, event: PublishedEvent, dataset: Dataset,
                            schema: SchemaVersion) -> None:
        """Refuse a NIR anywhere but the subject: the id, and every string of the data (its
        fields are the schema's, already checked) but those typed as SIREN or SIRET.

        ``source`` and ``type`` are catalog ids by now, and the time a parsed instant.
        """
        key = (dataset.id, schema.version)
        if key not in self._unscanned:
            self._unscanned[key] = company_identifier_paths(schema.raw)
        try:
            found = nir_locations({"id": event.id, "data": event.data},
                                  skip=self._unscanned[key])
        except TooDeep as exc:
            raise PublishRefused(exc.field, exc.reason) from None
        if found:
            raise PublishRefused(found[0], NIR_REASON)

    def look_up_schemas(self) -> None:
        """Ask the registry, once, for every dataset's current schema on every provider topic.

        A file then needs the registry only before its first line: one that stops answering
        half-way can no longer leave the file half published. A subject not registered yet
        is left to the first line that needs it (registered there where the principal may).
        """
        for dataset in self.catalog.datasets():
            for provider in dataset.providers:
                topic = self.catalog.topic_for(provider, dataset.id)
                subject = value_subject(topic)
                if self.registry.lookup(subject, dataset.latest.text) is not None:
                    self._serde.schema_id(subject, dataset.latest.text)  # known: cached only
                    self._registered.add(topic)

    def _register(self, topic: str, dataset: Dataset, schema: SchemaVersion) -> None:
        """Look the schema up under ``<topic>-value``, once per topic; register the dataset's
        versions only where the operator has not (a development registry).

        A provider only looks schemas up: on a secured registry registration is the
        operator's (``circulation schemas register``), and the refusal says so. Where it is
        done here, every version goes oldest first, as ``schemas register`` does, so that no
        subject gets its versions out of order or its compatibility rule unset.
        """
        if topic in self._registered:
            return
        subject = value_subject(topic)
        if self.registry.lookup(subject, schema.text) is None:
            try:
                register_versions(self.registry, subject, dataset.versions)
            except RegistryRefused as exc:
                raise RegistryRefused(
                    f"{subject} is not registered and this principal may not register it: "
                    f"the operator runs `circulation schemas register` first; {exc}") from None
        self._registered.add(topic)

    async def send(self, outgoing: OutgoingEvent) -> asyncio.Future[Any]:
        """Hand a prepared event to the producer; the returned future resolves once written."""
        if outgoing.topic not in self._topics_ready:
            await ensure_topics(self.settings, [spec(self.settings, outgoing.topic)])
            self._topics_ready.add(outgoing.topic)
        future: asyncio.Future[Any] = await self._producer.send(
            outgoing.topic, outgoing.value, key=outgoing.key, headers=outgoing.headers
        )
        return future

    async def publish(self, event: Mapping[str, Any] | PublishedEvent,
                      version: int | None = None) -> str:
        """Check, encode and durably write one event; return its event id."""
        outgoing = self.prepare(event, version)
        await (await self.send(outgoing))
        return outgoing.event_id

    async def flush(self) -> None:
        """Wait until everything handed to the producer is written."""
        await self._producer.flush()
