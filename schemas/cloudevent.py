"""CloudEvents 1.0 on the bus: the published JSON form, and the Kafka binary-mode binding.

A provider writes the structured JSON form (``id``, ``source``, ``type``, ``subject``, ``time``,
``data``); on Kafka the attributes travel as ``ce_*`` headers and the value is the Avro datum in
the Confluent wire format, so that both a CloudEvents-aware consumer and a plain Confluent Avro
consumer read the same record. The header mapping is the ``cloudevents`` SDK's, not ours.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary, to_binary
from cloudevents.core.v1.event import CloudEvent
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

AVRO_CONTENT_TYPE = "application/avro"


def _new_id() -> str:
    return str(uuid.uuid4())


class PublishedEvent(BaseModel):
    """What a provider publishes: a CloudEvents 1.0 JSON object about one person or company."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=_new_id, min_length=1, max_length=256)
    source: str = Field(min_length=1, description="The provider id, e.g. cnous.")
    type: str = Field(min_length=1, description="The dataset id, e.g. statut_etudiant_boursier.")
    subject: str = Field(min_length=1, description="The person's NIR or the company's SIREN.")
    time: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: Literal["application/json"] | None = None
    data: dict[str, Any]


class _AvroData:
    """A CloudEvents format whose data is already-encoded Avro bytes (binary mode only)."""

    def write_data(self, data: Any, datacontenttype: str | None) -> bytes:  # noqa: ARG002
        if not isinstance(data, bytes):
            raise TypeError("Avro event data must be encoded bytes")
        return data

    def read_data(self, body: bytes, content_type: str | None) -> bytes:  # noqa: ARG002
        return body

    def get_content_type(self) -> str:
        return AVRO_CONTENT_TYPE

    def read(self, event_factory: Any, data: str | bytes) -> BaseCloudEvent:
        raise NotImplementedError("Circulation uses the binary content mode only")

    def write(self, event: BaseCloudEvent) -> bytes:
        raise NotImplementedError("Circulation uses the binary content mode only")


_FORMAT = _AvroData()


def to_kafka(attributes: dict[str, Any], value: bytes, key: str) -> KafkaMessage:
    """Bind an event's attributes and Avro value to a Kafka message (binary content mode)."""
    event = CloudEvent({**attributes, "datacontenttype": AVRO_CONTENT_TYPE}, value)
    return to_binary(event, _FORMAT, key_mapper=lambda _: key)


def kafka_headers(message: KafkaMessage) -> list[tuple[str, bytes]]:
    """Headers in the list form Kafka clients take."""
    return list(message.headers.items())


def from_kafka(
    headers: Iterable[tuple[str, bytes]], key: bytes | None, value: bytes
) -> tuple[dict[str, Any], bytes]:
    """Read a binary-mode record back into its CloudEvents attributes and its raw value."""
    event = from_binary(KafkaMessage(dict(headers), key, value), _FORMAT)
    attributes = dict(event.get_attributes())
    attributes.pop("partitionkey", None)
    return attributes, value
