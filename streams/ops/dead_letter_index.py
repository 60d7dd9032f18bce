"""The dead letters of ``bus.dlq`` as an operator sees them: by reason, and chosen for a replay.

A dead letter holds no value of its record (:mod:`streams.routing.dead_letters`), only where it
was (origin topic, partition, offset) and what was wrong with it. Its **reason** is the error's
type and the field it names, as ``Type:field`` (``DecodeError``, with no field, when the error
named none): what an operator fixes once for many records, and what
``circulation dlq list --reason`` and ``circulation dlq replay --reason`` take. The free text
after it (the error's description) is kept for the listing; it never quotes a value either.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from schemas.catalog import Catalog
from schemas.codec import DecodeError
from schemas.serde import AvroSerde
from streams.kafka import clients
from streams.kafka.admin import end_offsets, existing_topics, topic_partitions
from streams.kafka.topics import DLQ
from streams.ops.accounting.window import parse_window
from streams.settings import Settings


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter: its record's coordinates, its reason and when it failed."""

    origin_topic: str
    origin_partition: int
    origin_offset: int
    reason: str
    description: str
    failed_at: datetime

    @property
    def origin(self) -> tuple[str, int, int]:
        return self.origin_topic, self.origin_partition, self.origin_offset


@dataclass
class ReasonGroup:
    """The dead letters of one reason: how many, from which topics, over which span."""

    reason: str
    description: str
    count: int = 0
    topics: set[str] = field(default_factory=set)
    first_failed_at: datetime | None = None
    last_failed_at: datetime | None = None

    def add(self, letter: DeadLetter) -> None:
        self.count += 1
        self.topics.add(letter.origin_topic)
        at = letter.failed_at
        self.first_failed_at = min(at, self.first_failed_at or at)
        self.last_failed_at = max(at, self.last_failed_at or at)

    def as_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "description": self.description, "count": self.count,
                "origin_topics": sorted(self.topics),
                "first_failed_at": _iso(self.first_failed_at),
                "last_failed_at": _iso(self.last_failed_at)}


def reason_of(error: str, field_name: str | None) -> tuple[str, str]:
    """(reason, description) of a letter whose ``error`` reads ``Type: field: description``
    (or ``Type: description`` when ``field_name`` is None)."""
    kind, _, rest = error.partition(": ")
    if field_name is not None and rest.startswith(f"{field_name}: "):
        rest = rest[len(field_name) + 2:]
    return (f"{kind}:{field_name}" if field_name else kind), rest


def letter_of(datum: dict[str, Any]) -> DeadLetter:
    """A decoded ``dead_letter`` datum (any version, read as the latest) as a letter."""
    reason, description = reason_of(datum["error"], datum.get("field"))
    return DeadLetter(datum["origin_topic"], datum["origin_partition"], datum["origin_offset"],
                      reason, description, datum["failed_at"])


def by_reason(letters: Iterable[DeadLetter]) -> list[ReasonGroup]:
    """The letters grouped by reason, the most frequent first."""
    groups: dict[str, ReasonGroup] = {}
    for letter in letters:
        group = groups.get(letter.reason)
        if group is None:
            group = groups[letter.reason] = ReasonGroup(letter.reason, letter.description)
        group.add(letter)
    return sorted(groups.values(), key=lambda g: (-g.count, g.reason))


def parse_since(text: str, now: datetime) -> datetime:
    """The instant ``--since`` names: a duration back from ``now`` (``90s``, ``30m``, ``1h``,
    ``2d``) or a date or instant (``2026-12-01``, ``2026-12-01T08:00:00+00:00``; UTC when it
    names no offset). :class:`ValueError` saying what is expected, never repeating ``text``."""
    try:
        return now - parse_window(text)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("a duration (90s, 30m, 1h, 2d) or a date (2026-12-01) or an instant "
                         "(2026-12-01T08:00:00+00:00)") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def selected(letters: Iterable[DeadLetter], reason: str | None,
             since: datetime | None) -> list[DeadLetter]:
    """The letters of ``reason`` (any when None) that failed at or after ``since``, one per
    origin record (a record that failed again has several letters), in origin order."""
    chosen: dict[tuple[str, int, int], DeadLetter] = {}
    for letter in letters:
        if reason is not None and letter.reason != reason:
            continue
        if since is not None and letter.failed_at < since:
            continue
        chosen.setdefault(letter.origin, letter)
    return [chosen[origin] for origin in sorted(chosen)]


Offsets = dict[TopicPartition, int]


async def letter_ends(settings: Settings) -> Offsets:
    """Where ``bus.dlq`` ends now: the letters written from now on begin there."""
    return await end_offsets(settings, [DLQ], missing_ok=True)


async def read_letters(settings: Settings, after: Offsets | None = None,
                       catalog: Catalog | None = None) -> list[DeadLetter]:
    """Every dead letter on ``bus.dlq`` up to its end offsets now, from the offsets ``after``
    names (the beginning otherwise). A record that does not read as a dead letter is skipped:
    the topic is the bus's own, and one such record must not hide the others."""
    if DLQ not in await existing_topics(settings, DLQ):
        return []
    schema = (catalog or Catalog.load()).bus_record("dead_letter").latest.parsed
    serde = AvroSerde(clients.schema_registry(settings))
    letters: list[DeadLetter] = []
    partitions = await topic_partitions(settings, [DLQ])
    for value in await _values(settings, partitions, after or {}):
        try:
            letters.append(letter_of(serde.decode(value, schema)[1]))
        except (DecodeError, TypeError, ValueError, KeyError):
            continue
    return letters


async def _values(settings: Settings, partitions: Sequence[TopicPartition],
                  after: Offsets) -> list[bytes]:
    """The values of ``partitions`` from the offsets ``after`` names (else their beginning) to
    their end offsets now."""
    consumer = clients.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    values: list[bytes] = []
    try:
        consumer.assign(list(partitions))
        starts = await consumer.beginning_offsets(list(partitions))
        firsts = {tp: max(starts[tp], after.get(tp, 0)) for tp in partitions}
        for tp, first in firsts.items():
            consumer.seek(tp, first)
        ends = await consumer.end_offsets(list(partitions))
        pending = {tp for tp in partitions if ends[tp] > firsts[tp]}
        while pending:
            for records in (await consumer.getmany(*pending, timeout_ms=1000)).values():
                values += [r.value for r in records if r.value is not None]
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return values


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat()



def failed_again(later: Iterable[DeadLetter], asked: Iterable[DeadLetter]) -> list[DeadLetter]:
    """The letters of ``later`` (written after a replay was asked) about a record ``asked``
    names: replayed, it failed again."""
    origins = {letter.origin for letter in asked}
    return [letter for letter in later if letter.origin in origins]
