"""A worker signs its chains' heads every so many audit records or seconds, heads it has seen
acknowledged only, and forgets them at a rebalance."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.catalog import Catalog
from schemas.serde import AvroSerde
from streams.audit.checkpoints import Checkpoint, Head, signature_holds
from streams.kafka.topics import AUDIT, AUDIT_CHECKPOINTS
from streams.routing.records import Outgoing
from streams.settings import Settings
from streams.worker.checkpointer import Checkpointer
from tests.unit.memory_registry import MemoryRegistry

KEY = Ed25519PrivateKey.generate()


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _checkpointer(clock: _Clock, records: int = 10, seconds: float = 60) -> Checkpointer:
    settings = Settings(audit_checkpoint_records=records, audit_checkpoint_seconds=seconds)
    return Checkpointer(settings, KEY, Catalog.load(), AvroSerde(MemoryRegistry()), clock)


def _read(outgoing: Outgoing, checkpointer: Checkpointer) -> Checkpoint:
    assert outgoing.topic == AUDIT_CHECKPOINTS
    return Checkpoint.from_record(checkpointer._serde.decode(outgoing.value)[1])


def test_a_checkpoint_is_due_after_so_many_records_and_names_acknowledged_heads() -> None:
    clock = _Clock()
    checkpointer = _checkpointer(clock, records=10)
    assert checkpointer.written({0: "a" * 64}, {(AUDIT, 0): 4}, 6) is None
    due = checkpointer.written({1: "b" * 64, 2: "c" * 64}, {(AUDIT, 1): 9}, 4)
    assert due is not None
    checkpoint = _read(due, checkpointer)
    assert checkpoint.heads == (Head(0, 4, "a" * 64), Head(1, 9, "b" * 64)), \
        "chain 2 was routed but its record not acknowledged: not signed"
    assert signature_holds(KEY.public_key(), checkpoint)
    assert checkpointer.written({0: "d" * 64}, {(AUDIT, 0): 5}, 1) is None, "counted anew"


def test_a_checkpoint_is_due_after_so_many_seconds_of_writing() -> None:
    clock = _Clock()
    checkpointer = _checkpointer(clock, records=1000, seconds=60)
    assert checkpointer.written({0: "a" * 64}, {(AUDIT, 0): 1}, 2) is None
    clock.now = 61
    assert checkpointer.written({}, {}, 0) is not None, "something unsigned, time is up"
    clock.now = 200
    assert checkpointer.written({}, {}, 0) is None, "nothing new written: nothing to sign"


def test_a_rebalance_forgets_the_heads() -> None:
    clock = _Clock()
    checkpointer = _checkpointer(clock, records=2)
    checkpointer.written({0: "a" * 64}, {(AUDIT, 0): 1}, 1)
    checkpointer.reset()
    due = checkpointer.written({1: "b" * 64}, {(AUDIT, 1): 3}, 2)
    assert due is not None
    assert _read(due, checkpointer).heads == (Head(1, 3, "b" * 64),)
