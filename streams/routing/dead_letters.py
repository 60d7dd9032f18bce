"""Dead letters: a provider record that cannot be routed is set aside, and routing goes on.

One bad record (undecodable, invalid, a raw NIR where a subject reference belongs) must never
stop the partition behind it, nor be lost silently: it goes to ``bus.dlq`` with its origin
(topic, partition, offset, timestamp) so that an operator can find it, and with only what
:mod:`streams.privacy.redaction` lets through of its key, value, headers and error.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from schemas.catalog import Catalog
from schemas.registration import value_subject
from schemas.serde import AvroSerde
from streams.kafka.topics import DLQ
from streams.privacy.redaction import (
    redacted_error,
    redacted_headers,
    redacted_key,
    redacted_value,
)
from streams.routing.records import Outgoing, SourceRecord

log = structlog.get_logger(__name__)
DLQ_SUBJECT = value_subject(DLQ)


class DeadLetters:
    """Writes the dead letter of a record, redacted, in the bus's ``dead_letter`` schema."""

    def __init__(self, catalog: Catalog, serde: AvroSerde) -> None:
        self._serde = serde
        self._schema = catalog.bus_record("dead_letter").latest

    def letter(self, record: SourceRecord, error: Exception, failed_at: datetime) -> Outgoing:
        """The dead letter of ``record``, which failed with ``error`` at ``failed_at``."""
        log.warning("dead letter", topic=record.topic, partition=record.partition,
                    offset=record.offset, error=type(error).__name__)
        letter = {
            "error": redacted_error(error), "origin_topic": record.topic,
            "origin_partition": record.partition, "origin_offset": record.offset,
            "origin_timestamp": (datetime.fromtimestamp(record.timestamp_ms / 1000, UTC)
                                 if record.timestamp_ms is not None else None),
            "failed_at": failed_at, "key": redacted_key(record.key),
            "value": redacted_value(record.value),
            "headers": redacted_headers(record.headers),
        }
        return Outgoing(DLQ, None, self._serde.encode_datum(DLQ_SUBJECT, self._schema, letter),
                        [])
