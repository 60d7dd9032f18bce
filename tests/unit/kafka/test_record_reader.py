"""A fetched batch holding a header name that is not UTF-8 (``streams.kafka.record_reader``):
every record of the batch is read, the name escaped, the others as aiokafka reads them; and
every consumer of the process reads batches that way once a bus consumer is made.

The broker-level counterpart (a real worker reading such a record from a provider topic) is
``tests/integration/test_routing_workers.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy as PythonBuilder

from streams.kafka import clients, record_reader
from streams.settings import Settings
from tests.raw_header_names import RawHeaderName

Headers = list[tuple[str, bytes | None]]
RECORDS: list[tuple[bytes | None, bytes | None, Headers]] = [
    (b"k0", b"v0", [("ce_id", b"0")]),
    (b"k1", b"v1", [("ce_id", b"1"), (RawHeaderName(b"note\xff"), b"x"), ("trace", None)]),
    (None, b"v2", []),
    (b"k3", None, [(RawHeaderName(b"\xc3"), None)]),
    (b"k4", b"v4", [("ce_id", b"4")]),
]
GZIP = DefaultRecordBatch.CODEC_GZIP


def _batch(base_offset: int, compression: int, records: list[Any]) -> bytes:
    builder = PythonBuilder(magic=2, compression_type=compression, is_transactional=0,
                            producer_id=-1, producer_epoch=-1, base_sequence=-1,
                            batch_size=1 << 20)
    for delta, (key, value, headers) in enumerate(records):
        builder.append(delta, timestamp=1_000 + delta, key=key, value=value, headers=headers)
    data = bytearray(builder.build())
    data[:8] = base_offset.to_bytes(8, "big")  # outside the checksum, as a broker sets it
    return bytes(data)


def _read(data: bytes) -> list[tuple[int, int, bytes | None, bytes | None, Headers]]:
    records = record_reader.EscapingMemoryRecords(data)
    read = []
    while records.has_next():
        batch = records.next_batch()
        assert batch.validate_crc()
        read += [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in batch]
    return read


@pytest.mark.parametrize("compression", [0, GZIP], ids=["plain", "gzip"])
def test_every_record_of_a_batch_with_a_name_not_utf8_is_read(compression: int) -> None:
    valid = [RECORDS[0], RECORDS[2]]
    data = _batch(10, compression, RECORDS) + _batch(20, compression, valid)
    expected = [(10 + i, 1_000 + i, key, value,
                 [(n.raw.decode("utf-8", "surrogateescape") if isinstance(n, RawHeaderName)
                   else n, v) for n, v in headers])
                for i, (key, value, headers) in enumerate(RECORDS)]
    expected += [(20 + i, 1_000 + i, key, value, headers)
                 for i, (key, value, headers) in enumerate(valid)]
    assert _read(data) == expected


def test_aiokafka_alone_stops_on_such_a_name() -> None:
    """What the reader is for: if aiokafka ever reads such names itself, it can go."""
    batch = DefaultRecordBatch(_batch(0, 0, RECORDS))
    with pytest.raises(UnicodeDecodeError):
        list(batch)


def test_a_batch_without_such_names_is_aiokafka_s_own() -> None:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    builder.append(0, timestamp=5, key=b"k", value=b"v", headers=[("ce_id", b"1")])
    assert _read(bytes(builder.build())) == [(0, 5, b"k", b"v", [("ce_id", b"1")])]


async def test_a_bus_consumer_makes_the_fetcher_read_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetcher, "MemoryRecords", fetcher.MemoryRecords)  # undone after
    clients.consumer(Settings())
    assert fetcher.MemoryRecords is record_reader.EscapingMemoryRecords
