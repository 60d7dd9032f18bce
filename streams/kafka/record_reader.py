"""How the bus's consumers read fetched record batches: a header *name* that is not UTF-8 is
handed on, escaped, instead of stopping the consumer.

Kafka lets a header name be any bytes, and a Go or C producer (or a raw produce request) can
write such a name. aiokafka decodes header names strictly while its fetcher unpacks a batch,
before any of the bus's code sees the record: the decoding error escapes the consumer, so one
such record on a provider topic stopped the routing worker that read it, and again after each
restart, since the record is read again. Here the batches are still read by aiokafka's own
(compiled) reader; only a batch it cannot decode is read again by :class:`_EscapingBatch`, which
decodes header names with ``surrogateescape``, so that the record reaches the router, which
refuses it as a dead letter naming ``headers`` (``streams.routing.delivery``). The records
before and after it in the batch are read as usual.

aiokafka has no setting for this; its fetcher builds each response's records with the
``MemoryRecords`` it imported, so :func:`install` replaces that name in the fetcher's module,
for every consumer of the process: the routing worker's, and the bus's other readers of
provider topics (``reconcile``). The state follower and ``consume`` read only topics the bus
writes itself, but read the same way.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from itertools import islice
from typing import Any

from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import _DefaultRecordBatchPy, _DefaultRecordPy
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import decode_varint

_LENGTH = struct.Struct(">i")
_LOG_OVERHEAD = 12
"""A batch's base offset and length, before the ``length`` bytes the length counts."""
_MAGIC = 16
"""Where a batch's format version sits: format 2 carries headers."""


class EscapingMemoryRecords:
    """A fetch response's records as aiokafka's ``MemoryRecords`` reads them, each batch of
    the current format able to fall back on :class:`_EscapingBatch`."""

    def __init__(self, data: bytes) -> None:
        self._records = MemoryRecords(data)
        self._data = memoryview(data)
        self._position = 0

    def size_in_bytes(self) -> int:
        return len(self._data)

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        start = self._position
        self._position += _LOG_OVERHEAD + _LENGTH.unpack_from(self._data, start + 8)[0]
        if batch is None or self._data[start + _MAGIC] < 2:
            return batch
        return _FallibleBatch(batch, self._data[start:self._position])


class _FallibleBatch:
    """aiokafka's batch, read by aiokafka until a header name fails to decode, then from that
    record on by :class:`_EscapingBatch`; anything else is aiokafka's batch itself."""

    def __init__(self, batch: Any, data: memoryview) -> None:
        self._batch = batch
        self._data = data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __next__(self) -> Any:  # how aiokafka reads a control batch's marker
        return next(self._batch)

    def __iter__(self) -> Iterator[Any]:
        read = 0
        try:
            for record in self._batch:
                yield record
                read += 1
        except UnicodeDecodeError:
            yield from islice(_EscapingBatch(self._data), read, None)


class _EscapingBatch(_DefaultRecordBatchPy):  # type: ignore[misc]  # aiokafka's is untyped
    """aiokafka's pure-Python batch reader, with header names decoded as ``surrogateescape``:
    a name that is not UTF-8 keeps its bytes, as lone surrogates no clean name has."""

    _buffer: bytearray
    _pos: int

    def _read_msg(self, decode_varint: Any = decode_varint) -> _DefaultRecordPy:
        buffer = self._buffer
        length, pos = decode_varint(buffer, self._pos)
        end = pos + length
        _, pos = decode_varint(buffer, pos)  # attributes: none defined for a record
        timestamp_delta, pos = decode_varint(buffer, pos)
        offset_delta, pos = decode_varint(buffer, pos)
        key, pos = _nullable_bytes(buffer, pos)
        value, pos = _nullable_bytes(buffer, pos)
        count, pos = decode_varint(buffer, pos)
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(count):
            name, pos = _nullable_bytes(buffer, pos)
            if name is None:
                raise CorruptRecordException("a header without a name")
            header_value, pos = _nullable_bytes(buffer, pos)
            headers.append((name.decode("utf-8", "surrogateescape"), header_value))
        if pos != end:
            raise CorruptRecordException("a record's length does not match its content")
        self._pos = pos
        timestamp = (self.max_timestamp if self.timestamp_type == self.LOG_APPEND_TIME
                     else self.first_timestamp + timestamp_delta)
        return _DefaultRecordPy(self.base_offset + offset_delta, timestamp, self.timestamp_type,
                                key, value, headers)


def _nullable_bytes(buffer: bytearray, pos: int) -> tuple[bytes | None, int]:
    """The bytes (None when the length is negative) at ``pos``, and the position after them."""
    size, pos = decode_varint(buffer, pos)
    if size < 0:
        return None, pos
    return bytes(buffer[pos:pos + size]), pos + size


def install() -> None:
    """Have every aiokafka consumer of this process read batches as :class:`EscapingMemoryRecords`
    (idempotent)."""
    fetcher.MemoryRecords = EscapingMemoryRecords
