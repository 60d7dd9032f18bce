"""Replay markers: how an operator asks the routing workers to route dead-lettered records again.

A dead letter holds no value of its record, only its coordinates (:mod:`.dead_letters`), so
replaying one means reading the original record again from its provider partition. Only the
worker that owns that partition may route it: it is the single writer of the partition's audit
chain (:mod:`streams.audit.chain`). A marker therefore travels the way a fence does
(:mod:`streams.state.fences`): one record, marked by a header, written into the origin
partition itself. The worker meets it in order, reads the offsets it names from that same
partition and routes them again through the router, as replays.

Anyone with Write on a provider topic (its provider) can forge a marker. What a marker can ask
is bounded so that a forged one is harmless: only offsets *before* the marker, on the marker's
own partition, each routed with its own event id, so the same delivery ids as the first time.
A marker that does not read as one is routed like any other record: it becomes a dead letter
naming ``value``, and routing goes on.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.routing.records import UnroutableRecord
from streams.state.fences import Positions, positions_after

REPLAY_HEADER = "circulation-replay"
"""The header that marks a record of a provider topic as a replay marker, not an event."""
REPLAY_KEY = b"circulation-replay"
MAX_OFFSETS = 500
"""Offsets one marker may name: a forged marker must not make a worker read a whole partition
in one batch. ``circulation dlq replay`` writes as many markers as it needs."""


class MarkerRefused(UnroutableRecord):
    """A record marked as a replay marker that does not read as one: routed, it becomes a dead
    letter naming ``value`` (never repeating it)."""

    def __init__(self, reason: str) -> None:
        super().__init__("value", reason)


def is_replay_marker(headers: Sequence[tuple[str, Any]]) -> bool:
    """Whether a provider topic record is a replay marker (it carries the marker header)."""
    return any(name == REPLAY_HEADER for name, _ in headers)


def is_marker_read(key: bytes | None, value: bytes | None, offset: int,
                   headers: Sequence[tuple[str, Any]]) -> bool:
    """Whether a worker reads the record at ``offset`` as a replay marker (and routes the
    records it names in its place) rather than as a record to route, or dead-letter."""
    if key != REPLAY_KEY or not is_replay_marker(headers):
        return False
    try:
        read_marker(value, offset)
    except MarkerRefused:
        return False
    return True


def encode_marker(offsets: Sequence[int]) -> bytes:
    """A marker's value: ``{"offsets": [...]}`` as JSON, sorted and without repeats."""
    wanted = sorted(set(offsets))
    if not wanted or len(wanted) > MAX_OFFSETS or wanted[0] < 0:
        raise ValueError(f"a replay marker names 1 to {MAX_OFFSETS} offsets, none negative")
    return json.dumps({"offsets": wanted}).encode()


def read_marker(value: bytes | None, own_offset: int) -> list[int]:
    """The offsets a marker at ``own_offset`` asks to replay, sorted: each before the marker,
    not negative, at most :data:`MAX_OFFSETS`. :class:`MarkerRefused` otherwise."""
    try:
        offsets = json.loads(value or b"")["offsets"]
    # Anyone may write one; JSON reads 1e400 as infinity, and nests as deep as it is told.
    except (ValueError, TypeError, KeyError, RecursionError, OverflowError):
        raise MarkerRefused("not a replay marker's JSON object naming offsets") from None
    if not isinstance(offsets, list) or not 0 < len(offsets) <= MAX_OFFSETS:
        raise MarkerRefused(f"a replay marker names a list of 1 to {MAX_OFFSETS} offsets")
    if not all(type(o) is int and 0 <= o < own_offset for o in offsets):
        raise MarkerRefused("a replay marker names offsets before its own on its "
                            "partition, as whole numbers")
    return sorted(set(offsets))


def markers_for(origins: Iterable[tuple[str, int, int]]) -> dict[tuple[str, int], list[bytes]]:
    """The marker values to write on each (topic, partition) so that every origin (topic,
    partition, offset) is replayed: its offsets in order, :data:`MAX_OFFSETS` per marker."""
    offsets: dict[tuple[str, int], set[int]] = defaultdict(set)
    for topic, partition, offset in origins:
        offsets[(topic, partition)].add(offset)
    return {place: [encode_marker(ordered[i:i + MAX_OFFSETS])
                    for i in range(0, len(ordered), MAX_OFFSETS)]
            for place, ordered in ((p, sorted(o)) for p, o in sorted(offsets.items()))}


async def write_markers(producer: AIOKafkaProducer,
                        markers: dict[tuple[str, int], list[bytes]]) -> Positions:
    """Write every marker on its partition, once each is acknowledged (``producer`` waits for
    all replicas, as a fence's does); return the position after the last marker of each
    partition: the routers' committed offset there reaches it once they routed every marker."""
    sends = [await producer.send(topic, value, key=REPLAY_KEY, partition=partition,
                                 headers=[(REPLAY_HEADER, b"1")])
             for (topic, partition), values in markers.items() for value in values]
    return positions_after([await sent for sent in sends])
