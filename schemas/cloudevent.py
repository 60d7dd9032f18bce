"""CloudEvents 1.0 on the bus: the published JSON form, and the Kafka binary-mode binding.

A provider writes the structured JSON form (``id``, ``source``, ``type``, ``subject``, ``time``,
``data``); on Kafka the attributes travel as ``ce_*`` headers and the value is the Avro datum in
the Confluent wire format, so that both a CloudEvents-aware consumer and a plain Confluent Avro
consumer read the same record. The header mapping is the ``cloudevents`` SDK's, not ours.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary, to_binary
from cloudevents.core.v1.event import CloudEvent
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

AVRO_CONTENT_TYPE = "application/avro"


def _new_id() -> str:
    return str(uuid.uuid4())


EVENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""A UUID (its usual form) or a provider's own short token: nothing else to hide a value in."""
_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
                      r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})")
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
"""Kafka counts time from the epoch: an event cannot have happened before."""
LATEST_TIME = datetime(2100, 1, 1, tzinfo=UTC)
"""Excluded. Far enough for any real event, near enough that every reader can convert it."""


def _event_id(value: str) -> str:
    if not EVENT_ID.fullmatch(value):
        raise ValueError("must be a UUID or 1 to 64 letters, digits, dots, underscores or "
                         "hyphens")
    return value


def _event_time(value: object) -> datetime:
    """An aware datetime, or an RFC 3339 string with seconds and an offset, in the sane range.

    A bare number is refused (pydantic would read it as an epoch), and so is an instant whose
    UTC form does not exist (``9999-12-31T23:00:00-12:00``) or that readers could not convert.
    """
    if isinstance(value, str) and _RFC3339.fullmatch(value):
        try:
            value = datetime.fromisoformat(value.upper())
        except ValueError:
            value = None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError("must be an RFC 3339 date-time with seconds and an offset, "
                         "e.g. 2030-01-31T08:30:00Z or 2030-01-31T09:30:00+01:00")
    try:
        inside = EARLIEST_TIME <= value.astimezone(UTC) < LATEST_TIME
    except OverflowError:
        inside = False
    if not inside:
        raise ValueError(f"must be between {EARLIEST_TIME:%Y-%m-%d} and {LATEST_TIME:%Y-%m-%d} "
                         f"(UTC, the latter excluded)")
    return value


class PublishedEvent(BaseModel):
    """What a provider publishes: a CloudEvents 1.0 JSON object about one person or company."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    specversion: Literal["1.0"] = "1.0"
    id: Annotated[str, AfterValidator(_event_id)] = Field(
        default_factory=_new_id, description="A UUID, or 1 to 64 of [A-Za-z0-9._-].")
    source: str = Field(min_length=1, description="The provider id, e.g. cnous.")
    type: str = Field(min_length=1, description="The dataset id, e.g. statut_etudiant_boursier.")
    subject: str = Field(min_length=1, description="The person's NIR or the company's SIREN.")
    time: Annotated[AwareDatetime, BeforeValidator(_event_time)] = Field(
        default_factory=lambda: datetime.now(UTC))
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
