"""Events posted to the gateway, judged together and written all or none.

Every event of a request goes through :meth:`Publisher.prepare`, the check ``circulation
publish`` makes, before any is sent: a request is refused whole, naming every failing event by
its index and field (``3.data.montant``), or every one is produced. A provider posts only its
own events (``source``); a refusal never repeats what it was sent.

Once valid, each event id is reserved in the replica's :class:`AcceptedEvents`: an id accepted
within the window is answered again without a record, the same id with another content is a
conflict. The request is answered once Kafka acknowledged every event it produced; when Kafka
fails part-way, the answer says which events were written and which may have been, and the
latter are released so that the caller's retry, with the same ids, produces only those.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.gateway.accepted_events import AcceptedEvents, EventKey, Reservation
from connectors.gateway.auth import is_provider
from connectors.gateway.problems import FieldProblem, Problem
from connectors.publisher import OutgoingEvent, PublishRefused
from schemas.registry import RegistryError
from streams.security.principals import Principal


class EventSender(Protocol):
    """What ingestion needs of :class:`~connectors.publisher.Publisher`."""

    def prepare(self, event: Mapping[str, Any]) -> OutgoingEvent: ...

    async def send(self, outgoing: OutgoingEvent) -> asyncio.Future[Any]: ...


@dataclass(frozen=True)
class Prepared:
    """One valid event of the request: where it was, what goes to Kafka, and its digest."""

    index: int
    outgoing: OutgoingEvent
    digest: bytes


def content_digest(event: Mapping[str, Any]) -> bytes:
    """The event as posted, key order aside: what tells a retry from another event (128 bits
    of SHA-256: a replica keeps one per id accepted within its window)."""
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).digest()[:16]


class Ingestion:
    """Judges and writes the events of one request after another, for one replica."""

    def __init__(self, sender: EventSender, accepted: AcceptedEvents) -> None:
        self._sender = sender
        self._accepted = accepted

    async def ingest(self, who: Principal, events: Sequence[Any], batch: bool) -> list[str]:
        """Write ``events`` (all or none) and return their ids, in the order posted; a
        :class:`Problem` when any is refused or Kafka did not acknowledge them all."""
        prepared = self._judge(who, events, batch)
        keys = {p.index: (who.name, p.outgoing.event_id) for p in prepared}
        reservations = await self._reserve(prepared, keys, batch)
        to_write = [p for p in prepared if reservations[keys[p.index]] is Reservation.NEW]
        await self._write(to_write, keys, batch)
        return [p.outgoing.event_id for p in prepared]

    def _judge(self, who: Principal, events: Sequence[Any], batch: bool) -> list[Prepared]:
        """Every event prepared, or the request refused: ``403`` when any event is another
        provider's, else ``422`` listing every invalid one."""
        foreign, invalid, prepared = [], [], []
        for index, event in enumerate(events):
            place = f"{index}." if batch else ""
            if not isinstance(event, dict):
                invalid.append(FieldProblem(field=place + "event" if batch else "body",
                                            reason="a CloudEvent is a JSON object"))
                continue
            source = event.get("source")
            if isinstance(source, str) and not is_provider(who, source):
                foreign.append(FieldProblem(field=place + "source", reason=(
                    f"not the token's provider ({who.name}): a provider publishes only its "
                    "own datasets")))
                continue
            try:
                outgoing = self._sender.prepare(event)
            except PublishRefused as exc:
                invalid.append(FieldProblem(field=place + exc.field, reason=exc.reason))
                continue
            except RegistryError as exc:
                raise Problem(503, "the schema registry cannot be reached or refused: "
                                   f"{type(exc).__name__}") from None
            prepared.append(Prepared(index, outgoing, content_digest(event)))
        if foreign:
            raise Problem(403, "events of another provider's datasets", foreign)
        if invalid:
            raise Problem(422, f"{len(invalid)} event(s) refused; nothing was written",
                          invalid)
        return prepared

    async def _reserve(self, prepared: list[Prepared], keys: dict[int, EventKey],
                       batch: bool) -> dict[EventKey, Reservation]:
        """Reserve each id once; ``409`` for an id posted twice in the request with different
        contents, or accepted within the window with another content."""
        first: dict[EventKey, Prepared] = {}
        clashes = []
        for item in prepared:
            seen = first.setdefault(keys[item.index], item)
            if seen.digest != item.digest:
                clashes.append(_id_field(item.index, batch, "another event of this request "
                                                            "has this id"))
        if not clashes:
            reservations, conflicts = await self._accepted.reserve_all(
                (keys[p.index], p.digest) for p in first.values())
            clashes = [_id_field(first[key].index, batch, "already accepted with another "
                                                          "content (within the idempotency "
                                                          "window)") for key in conflicts]
        if clashes:
            raise Problem(409, "an event id is already taken by another event", clashes)
        return reservations

    async def _write(self, to_write: list[Prepared], keys: dict[int, EventKey],
                     batch: bool) -> None:
        """Produce each reserved event once; ``503`` naming which were written when Kafka
        did not acknowledge them all."""
        unique = list({keys[p.index]: p for p in to_write}.values())
        try:
            outcomes = await asyncio.gather(*(self._send(p) for p in unique),
                                            return_exceptions=True)
        except BaseException:  # the request was cancelled: let a retry produce them
            self._accepted.release(keys[p.index] for p in unique)
            raise
        written = [p for p, failure in zip(unique, outcomes, strict=True) if failure is None]
        unsure = [p for p, failure in zip(unique, outcomes, strict=True) if failure is not None]
        self._accepted.acknowledged(keys[p.index] for p in written)
        self._accepted.release(keys[p.index] for p in unsure)
        if unsure:
            raise Problem(503, "Kafka did not acknowledge every event: post the same events "
                               "again with the same ids; those written are not written twice",
                          [_id_field(p.index, batch, "written") for p in written]
                          + [_id_field(p.index, batch, "not acknowledged: it may or may not "
                                                       "have been written") for p in unsure])

    async def _send(self, item: Prepared) -> None:
        await (await self._sender.send(item.outgoing))


def _id_field(index: int, batch: bool, reason: str) -> FieldProblem:
    return FieldProblem(field=f"{index}.id" if batch else "id", reason=reason)
