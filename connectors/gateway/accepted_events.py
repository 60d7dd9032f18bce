"""The event ids a gateway replica accepted lately: why a retried POST writes no second record.

A provider that did not get an answer (a timeout, a dropped connection, a ``503``) posts the
same events again. Each id the replica had Kafka acknowledge is remembered with a digest of the
event as posted, for the idempotency window: the same event again is answered as accepted
without being produced, the same id with another content is a conflict. An id being produced
right now is held too, so that two identical requests arriving together produce it once: the
second waits for the first's outcome.

The memory is the replica's own (see ARCHITECTURE.md, "The HTTP gateway"): behind a load
balancer, a retry that lands on another replica is produced again.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

EventKey = tuple[str, str]
"""Who posted the event (its principal) and its id."""


class IdConflict(Exception):
    """The id was accepted, or is being produced, with another content."""


class Reservation(Enum):
    NEW = "new"
    """The caller holds the id: it produces the event, then says how that went."""
    ACCEPTED = "accepted"
    """Already written within the window: the caller answers without producing."""


@dataclass
class _Entry:
    digest: str
    outcome: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    expires: float | None = None  # set once Kafka acknowledged the event


class AcceptedEvents:
    """Accepted and in-flight event ids, each forgotten ``window_s`` after its acknowledgement.

    Entries are kept in the order they were acknowledged, so forgetting is a walk from the
    front that stops at the first entry still in its window.
    """

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._entries: OrderedDict[EventKey, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def reserve(self, key: EventKey, digest: str) -> Reservation:
        """Hold ``key`` for producing, or learn that it was accepted; :class:`IdConflict`
        when it was accepted or is in flight with another digest. Waits while another request
        produces the same event: if that fails, this one holds the id instead."""
        while True:
            self._forget_expired()
            entry = self._entries.get(key)
            if entry is None:
                self._entries[key] = _Entry(digest)
                return Reservation.NEW
            if entry.digest != digest:
                raise IdConflict
            if entry.expires is not None:
                return Reservation.ACCEPTED
            if await asyncio.shield(entry.outcome):
                return Reservation.ACCEPTED

    async def reserve_all(self, items: Iterable[tuple[EventKey, str]]
                          ) -> tuple[dict[EventKey, Reservation], list[EventKey]]:
        """Reserve every key (each once) in sorted order, so that two requests sharing ids
        cannot each hold one the other waits for. Returns the reservations and the keys in
        conflict; with any conflict, nothing stays held."""
        reservations: dict[EventKey, Reservation] = {}
        conflicts: list[EventKey] = []
        for key, digest in sorted(dict(items).items()):
            try:
                reservations[key] = await self.reserve(key, digest)
            except IdConflict:
                conflicts.append(key)
        if conflicts:
            self.release(k for k, r in reservations.items() if r is Reservation.NEW)
            return {}, conflicts
        return reservations, []

    def acknowledged(self, keys: Iterable[EventKey]) -> None:
        """Kafka wrote these: remember them for the window (or, with no window, forget)."""
        for key in keys:
            entry = self._entries.pop(key)
            if self._window_s > 0:
                entry.expires = self._clock() + self._window_s
                self._entries[key] = entry
            entry.outcome.set_result(True)

    def release(self, keys: Iterable[EventKey]) -> None:
        """These were not (surely) written: forget them, so that a retry produces them."""
        for key in keys:
            entry = self._entries.pop(key)
            entry.outcome.set_result(False)

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._entries:
            entry = next(iter(self._entries.values()))
            if entry.expires is None or entry.expires > now:
                return
            self._entries.popitem(last=False)
