"""No raw NIR on any topic: the scan that ends every session that used the broker.

The session fixture (``tests/conftest.py``) runs it once every test that used the broker has
finished, and fails the session when it finds anything. It reads every partition of every
topic but Kafka's internal ones (``__*``) from its beginning to the end offsets of now, and
looks in every key, value and header value for a 15-character run shaped like a NIR
(``[12378]`` + 4 digits + 2 digits or ``2A``/``2B`` + 8 digits) that is also a *valid* NIR
(control key included). A candidate must not follow a hexadecimal character, and runs inside
long lowercase hexadecimal strings (subject references, pseudonyms, audit hashes) are not NIRs:
this keeps the digits of random hashes from raising false alarms (and makes the scan fast).

The only records allowed to hold a raw NIR are those a test deliberately wrote to a provider
topic as bad input, marked with the :data:`RAW_NIR_MARKER` header: the bus must dead-letter
them, and the dead letters themselves are scanned like everything else. Findings are reported by
topic, partition, offset and place, never by value.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from schemas.identifiers import InvalidIdentifier, validate_nir
from streams.kafka import clients
from streams.settings import Settings

RAW_NIR_MARKER = "x-circulation-test-raw-identifier"
"""Header of a record a test wrote with a raw NIR on purpose, as a careless provider would."""
READ_TIMEOUT = 240.0

_CANDIDATE = re.compile(rb"[12378](?<![0-9a-f].)[0-9]{4}(?:[0-9]{2}|2[AB])[0-9]{8}")
"""A NIR's shape, not glued after a hex character."""
_DIGITISH = bytes(0x30 if chr(i) in "0123456789AB" else 0x2E for i in range(256))
_RUN = b"0" * 15
_HEX = frozenset(b"0123456789abcdef")
_HASH_RUN = 32
_MARGIN = 40
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
    async with clients.admin(settings) as admin:
        names = sorted(t for t in await admin.list_topics() if not t.startswith("__"))
        described = await admin.describe_topics(names)
    return [TopicPartition(t["topic"], p["partition"])
            for t in described if t["error_code"] == 0 for p in t["partitions"]]


@dataclass(frozen=True)
class Scan:
    """What a scan of every topic read and found (places, never values)."""

    partitions: int
    records: int
    findings: list[str]


async def scan_every_topic(settings: Settings) -> Scan:
    """Read every partition of every topic but Kafka's own, from its beginning to the end
    offsets of now, and say where raw NIRs are."""
    partitions = await _topics(settings)
    consumer = clients.consumer(settings, enable_auto_commit=False,
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
            if time.monotonic() - began > READ_TIMEOUT:
                raise TimeoutError(
                    f"could not read every topic within {READ_TIMEOUT:.0f}s ({scanned} records, "
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
            elif time.monotonic() - quiet_since > _QUIET:  # topics deleted meanwhile (tests
                existing = {tp.topic for tp in await _topics(settings)}  # clean up after them)
                pending = {tp for tp in pending if tp.topic in existing}
                quiet_since = time.monotonic()
    finally:
        await consumer.stop()
    return Scan(len(partitions), scanned, findings)
