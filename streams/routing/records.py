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
    headers: list[tuple[str, bytes]]


class Outgoing(NamedTuple):
    """One record to produce (a tuple: the router makes two to twenty per event, and a frozen
    dataclass costs several times more to build)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int | None = None
    """Explicit partition (audit chains); None lets the key decide."""
