"""Replay markers: what ``circulation dlq replay`` writes, what a worker accepts, and what a
forged or garbled marker becomes (a dead letter naming ``value``, the next record routed)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from schemas.serde import AvroSerde
from streams.routing.records import SourceRecord
from streams.routing.replay_markers import (
    MAX_OFFSETS,
    REPLAY_HEADER,
    REPLAY_KEY,
    MarkerRefused,
    encode_marker,
    is_marker_read,
    is_replay_marker,
    markers_for,
    read_marker,
)
from streams.routing.router import Router
from tests.unit.routing.test_hostile_records import (
    PERSON,
    _contract,
    _delivered,
    _letters,
    _state,
    router,  # noqa: F401 - fixture
    serde,  # noqa: F401 - fixture
)
from tests.unit.routing.test_rules import NOW, _record


def test_a_marker_reads_back_the_offsets_it_was_written_with() -> None:
    value = encode_marker([7, 3, 3, 5])
    assert json.loads(value) == {"offsets": [3, 5, 7]}
    assert read_marker(value, own_offset=8) == [3, 5, 7]


@pytest.mark.parametrize("value", [
    None, b"", b"not json", b"[1, 2]", b'{"offsets": 3}', b'{"offsets": []}',
    b'{"offsets": [1e400]}', b'{"offsets": [-1]}', b'{"offsets": ["3"]}',
    b'{"offsets": [true]}', b'{"offsets": [2.0]}', b'{"offsets": [9]}', b'{"offsets": [8]}',
    b"[" * 100_000, json.dumps({"offsets": list(range(MAX_OFFSETS + 1))}).encode(),
], ids=["null", "empty", "text", "list", "not-a-list", "none", "infinite", "negative",
        "string", "boolean", "float", "after-it", "itself", "deep", "too-many"])
def test_a_garbled_or_forged_marker_is_refused_naming_value(value: bytes | None) -> None:
    with pytest.raises(MarkerRefused) as refused:
        read_marker(value, own_offset=8)
    assert refused.value.field == "value"


def test_a_marker_names_offsets_of_its_own_partition_only() -> None:
    """A marker has no topic or partition to name: forged, it reaches nothing but the records
    before it on the partition it was written to."""
    assert read_marker(b'{"offsets": [1], "topic": "provider.dgfip.x", "partition": 2}', 5) == [1]


def test_markers_are_one_per_partition_and_at_most_max_offsets_each() -> None:
    origins = [("provider.a.b", 0, o) for o in range(MAX_OFFSETS + 2)]
    origins += [("provider.a.b", 1, 4), ("provider.a.b", 1, 4), ("provider.c.d", 0, 9)]
    markers = markers_for(origins)
    assert sorted(markers) == [("provider.a.b", 0), ("provider.a.b", 1), ("provider.c.d", 0)]
    first, second = (read_marker(v, 10**6) for v in markers[("provider.a.b", 0)])
    assert first == list(range(MAX_OFFSETS))
    assert second == [MAX_OFFSETS, MAX_OFFSETS + 1]
    assert [read_marker(v, 10) for v in markers[("provider.a.b", 1)]] == [[4]]


def test_a_marker_the_worker_could_not_read_is_a_dead_letter_and_the_next_is_routed(
        router: Router, serde: AvroSerde) -> None:  # noqa: F811
    contract = _contract("lyon", {"quotient_familial": ["quotient_familial"]})
    good, _ = _record(serde, "quotient_familial", PERSON, 2, 1)
    marker = SourceRecord(good.topic, good.partition, 0, None, REPLAY_KEY, b"garbled",
                          [(REPLAY_HEADER, b"1")])
    assert is_replay_marker(marker.headers)
    out = router.route([marker, good], _state(contract), now=NOW)
    (letter,) = _letters(serde, out)
    assert letter["field"] == "value"
    assert letter["origin_offset"] == 0
    assert letter["error"].startswith("MarkerRefused: value: ")
    assert len(_delivered(out)) == 1, "the next record was not routed"


def test_a_replayed_record_that_fails_again_is_a_new_dead_letter_at_the_same_origin(
        router: Router, serde: AvroSerde) -> None:  # noqa: F811
    contract = _contract("lyon", {"quotient_familial": ["quotient_familial"]})
    record, _ = _record(serde, "quotient_familial", PERSON, 1, 17)
    broken = dataclasses.replace(record, key=b"another-key", replay=True)
    out = router.route([broken], _state(contract), now=NOW)
    (letter,) = _letters(serde, out)
    assert (letter["origin_topic"], letter["origin_partition"], letter["origin_offset"]) == (
        record.topic, record.partition, 17)
    assert letter["field"] == "key"
    assert _delivered(out) == []


def test_a_record_is_read_as_a_marker_only_with_its_key_header_and_a_readable_value() -> None:
    """What the worker replaces by the records it names, and ``reconcile`` accounts as no
    event; anything else under the header is routed, so dead-lettered."""
    value, header = encode_marker([1]), [(REPLAY_HEADER, b"1")]
    assert is_marker_read(REPLAY_KEY, value, 2, header)
    assert not is_marker_read(b"sr1_x", value, 2, header)
    assert not is_marker_read(REPLAY_KEY, value, 2, [])
    assert not is_marker_read(REPLAY_KEY, b"{", 2, header)
    assert not is_marker_read(REPLAY_KEY, value, 1, header)
