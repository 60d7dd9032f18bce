"""The records routing reads and writes: a provider record in, records to produce out.

Plain values with no behaviour, so that the router, the worker, the sink and the tests share
one shape and no layer has to know another's Kafka client types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class SourceRecord:
    """A provider record as consumed, with its coordinates for dead letters and audit chains."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    """As the client gives them: a header's value may be null (Kafka allows it)."""
    replay: bool = False
    """Read again at an operator's request (:mod:`streams.routing.replay_markers`): its
    decisions are audited as replays."""


class Outgoing(NamedTuple):
    """One record to produce (a tuple: the router makes two to twenty per event, and a frozen
    dataclass costs several times more to build)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int | None = None
    """Explicit partition (audit chains); None lets the key decide."""


class UnroutableRecord(ValueError):
    """A provider record the router refuses (it becomes a dead letter): ``field`` names the
    culprit (a header, or a path in the data), ``reason`` says what is wrong, never its value."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
