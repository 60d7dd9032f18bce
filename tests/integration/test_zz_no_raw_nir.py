"""No raw NIR on any topic: every record of every topic, read after all the other tests.

The file's name makes it the last integration module, and the routing harness moves it to the
end of the session whatever is collected. It reads every partition of every topic but Kafka's
internal ones (``__*``) from its beginning to the end offsets of now, and looks in every key,
value and header value for a 15-character run shaped like a NIR
(``[12378]`` + 4 digits + 2 digits or ``2A``/``2B`` + 8 digits) that is also a *valid* NIR
(control key included). A candidate must not follow a hexadecimal character, and runs inside
long lowercase hexadecimal strings (subject references, pseudonyms, audit hashes) are not NIRs:
this keeps the digits of random hashes from raising false alarms (and makes the scan fast).

The only records allowed to hold a raw NIR are those a test deliberately wrote to a provider
topic as bad input, marked with the ``RAW_NIR_MARKER`` header: the bus must dead-letter them,
and the dead letters themselves are scanned like everything else. Findings are reported by
topic, partition, offset and place, never by value.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.identifiers import InvalidIdentifier, complete_nir, validate_nir
from streams.settings import Settings
from tests.conftest import Services
from tests.integration.routing_harness import RAW_NIR_MARKER

pytest_plugins = ("tests.integration.routing_harness",)

_CANDIDATE = re.compile(rb"[12378](?<![0-9a-f].)[0-9]{4}(?:[0-9]{2}|2[AB])[0-9]{8}")
"""A NIR's shape, not glued after a hex character."""
_DIGITISH = bytes(0x30 if chr(i) in "0123456789AB" else 0x2E for i in range(256))
_RUN = b"0" * 15
_HEX = frozenset(b"0123456789abcdef")
_HASH_RUN = 32
_MARGIN = 40
_READ_TIMEOUT = 240.0
_QUIET = 5.0


def _inside_hex_run(blob: bytes, start: int, end: int) -> bool:
    """Whether blob[start:end] belongs to a lowercase hex run of at least 32 characters."""
    left, right = start, end
    while left > 0 and blob[left - 1] in _HEX:
        left -= 1
    while right < len(blob) and blob[right] in _HEX:
        right += 1
    return right - left >= _HASH_RUN


def raw_nirs(blob: bytes) -> Iterator[int]:
    """Positions of valid NIRs in ``blob``, not glued after hex characters nor inside a hash.

    Fast on megabytes: runs of 15 digit-like characters are found on a translated copy with
    ``bytes.find``; only those few runs are looked at with the regex and the NIR check.
    """
    digitish = blob.translate(_DIGITISH)
    run = digitish.find(_RUN)
    while run != -1:
        end = run + len(_RUN)
        while end < len(digitish) and digitish[end] == 0x30:
            end += 1
        low = max(0, run - _MARGIN)
        for match in _CANDIDATE.finditer(blob[low:end + _MARGIN]):
            start = low + match.start()
            if not run <= start <= end - len(_RUN) or _inside_hex_run(blob, start, start + 15):
                continue
            try:
                validate_nir(match.group().decode("ascii"))
            except InvalidIdentifier:
                continue
            yield start
        run = digitish.find(_RUN, end)


def test_the_scanner_finds_nirs_and_ignores_hashes() -> None:
    nir = complete_nir("1840576451089").encode()  # synthetic, not a real person's
    corsica = complete_nir("284052A123456").encode()
    assert list(raw_nirs(b"\x1e" + nir + b"\x02")) == [1]  # an Avro string
    assert list(raw_nirs(b"subject: " + nir)) == [9]
    assert list(raw_nirs(corsica)) == [0]
    assert list(raw_nirs(nir + b"1790000000000")) == [0], "followed by digits"
    assert list(raw_nirs(nir[:-1] + bytes([nir[-1] ^ 1]))) == [], "wrong control key"
    assert list(raw_nirs(b"sr1_" + b"ab" * 8 + nir + b"cd" * 16)) == [], "inside a hash"


def _blobs(record: Any) -> Iterator[tuple[str, bytes]]:
    yield "key", record.key or b""
    yield "value", record.value or b""
    for name, value in record.headers or ():
        yield f"header {name}", value or b""


def _findings(tp: TopicPartition, records: list[Any]) -> list[str]:
    """Where raw NIRs are in these records: one search over all their bytes, hits mapped back."""
    joined = b"\x00".join(blob for record in records for _, blob in _blobs(record))
    if next(raw_nirs(joined), None) is None:
        return []
    found = []
    for record in records:
        if tp.topic.startswith("provider.") and any(
                name == RAW_NIR_MARKER for name, _ in record.headers or ()):
            continue  # bad input a test wrote on purpose; its dead letter is scanned
        found += [f"{tp.topic}[{tp.partition}]@{record.offset} {place}"
                  for place, blob in _blobs(record) if next(raw_nirs(blob), None) is not None]
    return found


async def _topics(settings: Settings) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if not t.startswith("__"))
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return [TopicPartition(t["topic"], p["partition"])
            for t in described if t["error_code"] == 0 for p in t["partitions"]]


async def test_no_record_on_any_topic_holds_a_raw_nir(services: Services) -> None:
    settings = services.settings()
    partitions = await _topics(settings)
    assert any(tp.topic.startswith("provider.") for tp in partitions)
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False,
                                max_partition_fetch_bytes=16 * 1024 * 1024,
                                fetch_max_bytes=128 * 1024 * 1024)
    await consumer.start()
    findings: list[str] = []
    scanned = 0
    began = time.monotonic()
    try:
        consumer.assign(partitions)  # first: offsets of unassigned topics are slow to ask
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        pending = {tp for tp in partitions if ends[tp] > starts[tp]}
        consumer.assign(list(pending))
        await consumer.seek_to_beginning(*pending)
        quiet_since = time.monotonic()
        while pending:
            assert time.monotonic() - began < _READ_TIMEOUT, (
                f"could not read every topic within {_READ_TIMEOUT:.0f}s ({scanned} records, "
                f"left: {sorted(map(str, pending))[:10]})")
            batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=50_000)
            for tp, records in batches.items():
                records = [r for r in records if r.offset < ends[tp]]
                scanned += len(records)
                findings += _findings(tp, records)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
                    consumer.pause(tp)
            if batches:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > _QUIET:  # topics deleted meanwhile (others'
                existing = {tp.topic for tp in await _topics(settings)}  # tests clean up)
                pending = {tp for tp in pending if tp.topic in existing}
                quiet_since = time.monotonic()
    finally:
        await consumer.stop()
    assert scanned > 0
    assert not findings, f"raw NIRs in {len(findings)} places:\n" + "\n".join(findings[:50])
