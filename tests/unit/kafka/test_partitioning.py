"""Partitioning: one key, one partition, as Kafka's own partitioner would place it where the bus
does not read the partition from an HMAC key itself."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from streams.kafka.partitioning import (
    _murmur,
    kafka_partition,
    murmur2,
    partition_of,
    subject_partition,
)


@given(st.binary(min_size=1, max_size=64), st.integers(1, 64))
def test_kafka_partition_is_kafka_s_default_partitioner(key: bytes, partitions: int) -> None:
    everyone = list(range(partitions))
    assert kafka_partition(key, partitions) == DefaultPartitioner()(key, everyone, everyone)


@given(st.binary(min_size=32, max_size=32), st.integers(1, 64))
def test_an_hmac_key_is_placed_by_its_own_first_bits(digest: bytes, partitions: int) -> None:
    key = b"ps2_" + digest.hex().encode()
    assert partition_of(key, partitions, spread=0) == int(digest[:4].hex(), 16) % partitions
    assert partition_of(key, partitions, spread=7) == partition_of(key, partitions, spread=0)


def test_any_other_key_goes_through_murmur2_and_keyless_records_are_spread() -> None:
    assert partition_of(b"552100554", 3, spread=5) == kafka_partition(b"552100554", 3)
    assert [partition_of(None, 3, spread=s) for s in range(4)] == [0, 1, 2, 0]


@given(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
       st.integers(min_value=1, max_value=64))
def test_a_subject_s_state_records_go_where_kafka_would_put_its_key(digits: str,
                                                                    partitions: int) -> None:
    reference = "sr1_" + digits
    expected = kafka_partition(reference.encode(), partitions)
    assert subject_partition(reference, partitions) == expected
    assert subject_partition(reference, partitions, cached=False) == expected


def test_a_restore_s_partition_checks_leave_the_routing_cache_alone() -> None:
    before = _murmur.cache_info().currsize
    for n in range(100):
        subject_partition(f"sr1_{n:064x}", 6, cached=False)
    assert _murmur.cache_info().currsize == before


@given(st.binary(max_size=100))
def test_murmur2_is_kafka_s(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key) & 0xFFFFFFFF
