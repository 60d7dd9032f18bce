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


class AcceptedEvents:
    """Accepted and in-flight event ids, each forgotten ``window_s`` after its acknowledgement.

    An accepted id keeps only a 128-bit digest and its expiry, in the order acknowledged, so
    forgetting is a walk from the front that stops at the first entry still in its window; the
    ids in flight, few, are kept apart with the future their waiters await.
    """

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._accepted: OrderedDict[EventKey, tuple[bytes, float]] = OrderedDict()
        self._in_flight: dict[EventKey, tuple[bytes, asyncio.Future[bool]]] = {}

    def __len__(self) -> int:
        return len(self._accepted) + len(self._in_flight)

    async def reserve(self, key: EventKey, digest: bytes) -> Reservation:
        """Hold ``key`` for producing, or learn that it was accepted; :class:`IdConflict`
        when it was accepted or is in flight with another digest. Waits while another request
        produces the same event: if that fails, this one holds the id instead."""
        while True:
            self._forget_expired()
            accepted = self._accepted.get(key)
            if accepted is not None:
                if accepted[0] != digest:
                    raise IdConflict
                return Reservation.ACCEPTED
            flying = self._in_flight.get(key)
            if flying is None:
                self._in_flight[key] = (digest, asyncio.get_running_loop().create_future())
                return Reservation.NEW
            if flying[0] != digest:
                raise IdConflict
            if await asyncio.shield(flying[1]):
                return Reservation.ACCEPTED

    async def reserve_all(self, items: Iterable[tuple[EventKey, bytes]]
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
            digest, outcome = self._in_flight.pop(key)
            if self._window_s > 0:
                self._accepted[key] = (digest, self._clock() + self._window_s)
            outcome.set_result(True)

    def release(self, keys: Iterable[EventKey]) -> None:
        """These were not (surely) written: forget them, so that a retry produces them."""
        for key in keys:
            _, outcome = self._in_flight.pop(key)
            outcome.set_result(False)

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._accepted:
            key, (_, expires) = next(iter(self._accepted.items()))
            if expires > now:
                return
            del self._accepted[key]
