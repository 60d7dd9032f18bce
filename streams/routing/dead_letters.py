"""Dead letters: a provider record that cannot be routed is set aside, and routing goes on.

One bad record (undecodable, invalid, a raw NIR where a subject reference belongs, headers that
lie about its provider) must never stop the partition behind it, nor be lost silently: it goes
to ``bus.dlq`` with its origin (topic, partition, offset, timestamp), what is wrong with it (the
field and the reason), the schema id its value names and its header names. That is what an
operator needs to find the record on its topic and have its provider fix the cause; a dead
letter copies nothing the record holds (no key, value or header value), so it keeps nothing
personal through its retention, whatever a careless provider put in the record.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from schemas.catalog import Catalog
from schemas.codec import FramingError, unframe
from schemas.registration import value_subject
from schemas.serde import AvroSerde, WriterSchema
from streams.kafka.topics import DLQ
from streams.privacy.redaction import error_cause, header_names, redacted_error
from streams.routing.records import Outgoing, SourceRecord

log = structlog.get_logger(__name__)
DLQ_SUBJECT = value_subject(DLQ)


class DeadLetters:
    """Writes the dead letter of a record in the bus's ``dead_letter`` schema."""

    def __init__(self, catalog: Catalog, serde: AvroSerde) -> None:
        self._serde = serde
        self._schema = catalog.bus_record("dead_letter").latest

    @property
    def encoding(self) -> tuple[str, WriterSchema]:
        """The subject and schema every dead letter is framed with."""
        return DLQ_SUBJECT, self._schema

    def letter(self, record: SourceRecord, error: Exception, failed_at: datetime) -> Outgoing:
        """The dead letter of ``record``, which failed with ``error`` at ``failed_at``."""
        field, _ = error_cause(error)
        log.warning("dead letter", topic=record.topic, partition=record.partition,
                    offset=record.offset, error=type(error).__name__, field=field)
        letter = {
            "error": redacted_error(error), "field": field,
            "origin_topic": record.topic, "origin_partition": record.partition,
            "origin_offset": record.offset,
            "origin_timestamp": (datetime.fromtimestamp(record.timestamp_ms / 1000, UTC)
                                 if record.timestamp_ms is not None else None),
            "failed_at": failed_at, "schema_id": _schema_id(record.value),
            "header_names": header_names(record.headers),
        }
        return Outgoing(DLQ, None, self._serde.encode_datum(DLQ_SUBJECT, self._schema, letter),
                        [])


def _schema_id(value: bytes | None) -> int | None:
    """The registry id a framed value names, when it is framed at all."""
    if value is None:
        return None
    try:
        return unframe(value)[0]
    except FramingError:
        return None
