"""Consumer lag, judged the way LinkedIn's Burrow judges it: models and evaluation, no I/O.

Kafka keeps a group's *latest* committed offset, not its history, so a single look cannot tell a
subscriber that is falling behind from one that has stopped. The bus therefore looks several
times: :mod:`streams.ops.lag.probe` takes a :class:`GroupSample` of every watched group every few
seconds, :class:`LagWindows` keeps the last few samples of each group (the sliding window, as
Burrow keeps the last N commits), and :func:`evaluate_group` judges each partition from its
window and gives the group the status of its worst partition.

Partition rules, over the window's observations, oldest to newest (Burrow's, adapted to sampled
observations, which see offsets move but not commit times):

``ERR``
    the latest observation could not read the offsets, or the committed offset is beyond the
    log end (the topic was recreated?) or before the log start (records expired unread).
``OK``
    the lag was zero at some observation of the window (Burrow's first rule), or there are not
    yet two observations to compare, or none of the rules below holds.
``STOP``
    the committed offset did not change across the whole window, the lag stayed above zero,
    and no active member of the group reads the partition: nobody is there to commit.
``STALL``
    the same, while a member still reads the partition (or that is unknown): a consumer is
    alive but its committed offset is stuck.
``WARN``
    the committed offset moves but the lag grew across every observation of the window (it
    never fell, and ended higher than it began): the consumer falls behind. A committed offset
    that moved backwards (an offset reset) is a warning too.

Lag in time is the age of the oldest unconsumed record: how long ago the record at the committed
offset was written (its timestamp), zero when the group has consumed everything.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from itertools import pairwise
from typing import Any

from schemas.codec import rfc3339_millis
from streams.kafka.topics import PROVIDER_PREFIX

ROUTER_GROUP = "circulation-router"
"""The routing workers' consumer group (the Faust app id of :mod:`streams.worker.app`)."""

DELIVERY_PREFIX = "deliver."
SUBSCRIBER_GROUP_PREFIX = "subscriber."


class Status(IntEnum):
    """A partition's or a group's status, ordered from best to worst."""

    OK = 0
    WARN = 1
    STALL = 2
    STOP = 3
    ERR = 4

    @property
    def alarming(self) -> bool:
        """STALL, STOP and ERR: someone must act (``circulation lag`` exits 1)."""
        return self >= Status.STALL


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """One partition as one group saw it at one observation."""

    topic: str
    partition: int
    committed: int | None
    """The group's committed offset: the next record it will read."""
    end: int | None
    """The log end offset: the offset the next record written will get."""
    start: int | None = None
    """The log start offset: the oldest record still kept."""
    oldest_unconsumed_ms: int | None = None
    """Timestamp (ms since the epoch) of the record at the committed offset, when lagging."""
    error: str | None = None
    """Why the offsets could not be read, when they could not."""
    owned: bool | None = None
    """Whether an active member of the group is assigned this partition (None: unknown, e.g.
    a client that assigns partitions itself)."""

    @property
    def lag(self) -> int | None:
        """Records between the committed offset and the log end, when both are known."""
        if self.committed is None or self.end is None:
            return None
        return max(self.end - self.committed, 0)


@dataclass(frozen=True, slots=True)
class GroupSample:
    """Everything observed about one consumer group at one instant."""

    group: str
    at: float
    """When (seconds since the epoch) the log end offsets were read."""
    partitions: tuple[PartitionOffsets, ...]
    members: int | None = None
    """Active members of the group; None when the coordinator could not tell."""
    state: str | None = None
    """The coordinator's word for the group (Stable, Empty, PreparingRebalance…)."""
    error: str | None = None
    """Why the group's committed offsets could not be read, when they could not."""


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition's verdict."""

    topic: str
    partition: int
    committed: int | None
    end: int | None
    start: int | None
    lag: int | None
    lag_seconds: float | None
    status: Status
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic, "partition": self.partition,
            "committed_offset": self.committed, "log_end_offset": self.end,
            "log_start_offset": self.start, "lag_records": self.lag,
            "lag_seconds": _rounded(self.lag_seconds), "status": self.status.name,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class GroupLag:
    """One group's verdict: the status of its worst partition, and every partition's."""

    group: str
    subscriber: str | None
    """The administration reading, or None for the bus's own routing group."""
    status: Status
    reason: str
    """Why: the worst partition's reason (or the group's own error)."""
    observed_at: float
    samples: int
    """How many observations the window held."""
    members: int | None
    state: str | None
    partitions: tuple[PartitionLag, ...]

    @property
    def lag(self) -> int:
        """Records behind, over every partition whose lag is known."""
        return sum(p.lag for p in self.partitions if p.lag is not None)

    @property
    def lag_seconds(self) -> float | None:
        """Age of the oldest unconsumed record over the group's partitions, when known."""
        ages = [p.lag_seconds for p in self.partitions if p.lag_seconds is not None]
        return max(ages) if ages else None

    @property
    def topics(self) -> list[str]:
        return sorted({p.topic for p in self.partitions})

    def as_json(self) -> dict[str, Any]:
        return {
            "group": self.group, "subscriber": self.subscriber, "status": self.status.name,
            "reason": self.reason, "lag_records": self.lag,
            "lag_seconds": _rounded(self.lag_seconds), "members": self.members,
            "state": self.state, "samples": self.samples, "topics": self.topics,
            "observed_at": instant(self.observed_at),
            "partitions": [p.as_json() for p in self.partitions],
        }


def instant(at: float) -> str:
    """An epoch time as an ISO 8601 UTC instant with milliseconds."""
    return rfc3339_millis(datetime.fromtimestamp(at, UTC))


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


# --- which groups and topics are watched -------------------------------------------------------

def is_watched(group: str, topic: str) -> bool:
    """Delivery topics, whoever reads them; provider topics, as read by the routing workers."""
    return topic.startswith(DELIVERY_PREFIX) or (
        group == ROUTER_GROUP and topic.startswith(PROVIDER_PREFIX))


def topic_subscriber(topic: str) -> str | None:
    """``deliver.<subscriber>.<contract>`` → the subscriber; None for any other topic."""
    if not topic.startswith(DELIVERY_PREFIX):
        return None
    parts = topic.split(".")
    return parts[1] if len(parts) >= 3 and parts[1] else None


def group_subscriber(group: str) -> str | None:
    """``subscriber.<subscriber>.<contract>`` → the subscriber; None for any other group."""
    if not group.startswith(SUBSCRIBER_GROUP_PREFIX):
        return None
    parts = group.split(".")
    return parts[1] if len(parts) >= 3 and parts[1] else None


def subscriber_of(group: str, topics: Iterable[str]) -> str | None:
    """The administration a group reads for: named by its delivery topics, else by its name."""
    named = {s for s in map(topic_subscriber, topics) if s is not None}
    if len(named) == 1:
        return named.pop()
    return group_subscriber(group)


def concerns(subscriber: str, group: str, topic: str) -> bool:
    """Whether a group's partition belongs to ``subscriber``'s view (``--subscriber``)."""
    return group_subscriber(group) == subscriber or topic_subscriber(topic) == subscriber


# --- evaluation ---------------------------------------------------------------------------------

def evaluate_partition(history: Sequence[PartitionOffsets], times: Sequence[float],
                       alive: bool | None) -> PartitionLag:
    """Judge one partition from its observations (oldest first) taken at ``times``.

    ``alive`` says whether someone reads the partition at the latest observation (None when
    unknown): it separates STALL (alive, not committing) from STOP (nobody there).
    """
    last = history[-1]
    at = times[-1]
    if last.error is not None:
        return _verdict(last, None, Status.ERR, last.error)
    lag = last.lag
    if last.committed is None or last.end is None or lag is None:
        return _verdict(last, None, Status.ERR, "offsets unavailable")
    if last.committed > last.end:
        return _verdict(last, None, Status.ERR, f"committed offset {last.committed} is beyond "
                        f"the log end {last.end}")
    if last.start is not None and last.committed < last.start:
        return _verdict(last, None, Status.ERR, f"committed offset {last.committed} is before "
                        f"the log start {last.start}: {last.start - last.committed} records "
                        "expired unread")
    age = _age(last, at)
    lags: list[int] = []
    committed: list[int] = []
    first_at = at
    for offsets, when in zip(history, times, strict=True):
        if offsets.error is None and offsets.committed is not None and offsets.end is not None:
            lags.append(max(offsets.end - offsets.committed, 0))
            committed.append(offsets.committed)
            if len(lags) == 1:
                first_at = when
    if min(lags) == 0:
        return _verdict(last, age, Status.OK, "caught up" if lag == 0
                        else "lag was zero within the window")
    if len(lags) < 2:
        return _verdict(last, age, Status.OK, "one observation so far: no trend yet")
    span = at - first_at
    for before, after in pairwise(committed):
        if after < before:
            return _verdict(last, age, Status.WARN,
                            f"committed offset moved back from {before} to {after}")
    if committed[0] == committed[-1]:
        if alive is False:
            return _verdict(last, age, Status.STOP, f"no commit for {span:.0f}s, lag {lag}, "
                            "no active member reads it")
        who = "a member reads it" if alive else "members unknown"
        return _verdict(last, age, Status.STALL, f"committed offset stuck at {last.committed} "
                        f"for {span:.0f}s with lag {lag}; {who}")
    if lags[-1] > lags[0] and all(b >= a for a, b in pairwise(lags)):
        return _verdict(last, age, Status.WARN, f"lag grew from {lags[0]} to {lags[-1]} in "
                        f"{span:.0f}s while consuming {committed[-1] - committed[0]}")
    return _verdict(last, age, Status.OK, "consuming, lag not growing")


def _age(offsets: PartitionOffsets, at: float) -> float | None:
    if offsets.lag == 0:
        return 0.0
    if offsets.oldest_unconsumed_ms is None:
        return None
    return max(at - offsets.oldest_unconsumed_ms / 1000, 0.0)


def _verdict(offsets: PartitionOffsets, age: float | None, status: Status,
             reason: str) -> PartitionLag:
    return PartitionLag(offsets.topic, offsets.partition, offsets.committed, offsets.end,
                        offsets.start, offsets.lag, age, status, reason)


def evaluate_group(window: Sequence[GroupSample]) -> GroupLag:
    """Judge a group from its window of samples (oldest first): its worst partition's status.

    The partitions judged are those of the latest sample; each is judged on the observations
    of it that the window holds.
    """
    latest = window[-1]
    if latest.error is not None:
        return GroupLag(latest.group, group_subscriber(latest.group), Status.ERR, latest.error,
                        latest.at, len(window), latest.members, latest.state, ())
    alive = None if latest.members is None else latest.members > 0
    histories: dict[tuple[str, int], tuple[list[PartitionOffsets], list[float]]] = {
        (p.topic, p.partition): ([], []) for p in latest.partitions}
    for sample in window:
        if sample.error is not None:
            continue
        for offsets in sample.partitions:
            entry = histories.get((offsets.topic, offsets.partition))
            if entry is not None:
                entry[0].append(offsets)
                entry[1].append(sample.at)
    verdicts = tuple(
        evaluate_partition(history, times,
                           alive if history[-1].owned is None or not alive
                           else history[-1].owned)
        for history, times in histories.values())
    verdicts = tuple(sorted(verdicts, key=lambda p: (p.topic, p.partition)))
    worst = max(verdicts, key=lambda p: (p.status, p.lag or 0), default=None)
    status = worst.status if worst else Status.OK
    if worst is None:
        reason = "no committed offsets on watched topics"
    elif worst.status == Status.OK:
        reasons = {p.reason for p in verdicts}
        reason = reasons.pop() if len(reasons) == 1 else "keeping up"
    else:
        reason = f"{worst.topic}[{worst.partition}]: {worst.reason}"
    return GroupLag(latest.group, subscriber_of(latest.group, (p.topic for p in verdicts)),
                    status, reason, latest.at, len(window), latest.members, latest.state,
                    verdicts)


def worst_first(groups: Iterable[GroupLag]) -> list[GroupLag]:
    """Groups sorted for an operator: worst status, then oldest lag, then most records."""
    return sorted(groups, key=lambda g: (-g.status, -(g.lag_seconds or 0.0), -g.lag, g.group))


class LagWindows:
    """The sliding window of every watched group: its last ``size`` samples.

    Feed it one round of samples at a time (:meth:`observe`); groups absent from a round are
    forgotten (their offsets expired, or they stopped reading watched topics).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a window holds at least one sample")
        self.size = size
        self._windows: dict[str, deque[GroupSample]] = {}

    def observe(self, samples: Iterable[GroupSample]) -> None:
        seen: set[str] = set()
        for sample in samples:
            window = self._windows.get(sample.group)
            if window is None:
                window = self._windows[sample.group] = deque(maxlen=self.size)
            window.append(sample)
            seen.add(sample.group)
        for group in self._windows.keys() - seen:
            del self._windows[group]

    @property
    def filled(self) -> int:
        """Samples held by the fullest window (how far the window has filled)."""
        return max((len(w) for w in self._windows.values()), default=0)

    def evaluate(self) -> list[GroupLag]:
        """Every group's verdict, worst first."""
        return worst_first(evaluate_group(window) for window in self._windows.values())
