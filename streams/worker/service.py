"""One worker's routing service: fence gate, router, sink and in-flight batches, in order.

Everything a batch goes through between the Faust agent that takes it (:mod:`streams.worker.app`)
and its acknowledgement: the fence gate holds it until the state follower reached what its
fences name, the audit chain heads are known, the router decides and encodes, the sink hands the
records to the producer, and :mod:`streams.worker.inflight` acknowledges the batch once all of
it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faust.types import TP

from schemas.catalog import Catalog
from schemas.serde import AvroSerde
from streams.audit.heads import ChainHeads
from streams.kafka import clients
from streams.kafka.topics import AUDIT, PROVIDER_PREFIX
from streams.ops import metrics
from streams.privacy.pseudonyms import Pseudonymiser
from streams.privacy.redaction import redacted_error
from streams.routing.records import Outgoing, SourceRecord
from streams.routing.router import Router
from streams.routing.tally import RoutingTally
from streams.settings import Settings
from streams.state.fences import FenceGate
from streams.state.follower import StateFollower
from streams.worker.checkpointer import Checkpointer
from streams.worker.inflight import InFlight, Routed
from streams.worker.replays import ReplayReader
from streams.worker.sink import BatchSink
from streams.worker.state_audit import StateAudit

log = structlog.get_logger(__name__)

IN_FLIGHT_BATCHES = 8
"""Routed batches whose writes may be pending at once (see :mod:`streams.worker.inflight`)."""
ENDS_CHECKED_EVERY_S = 30.0
"""Seconds between two looks for contracts that ended (revoked or past their last day) when no
state change wakes the state audit earlier."""


@dataclass(frozen=True)
class BatchReport:
    """What the log line and the metrics of a batch need once it is written."""

    tally: RoutingTally
    records: list[SourceRecord]
    written: int
    began: float
    fenced: float
    routed: float
    heads: dict[int, str]
    """The head hash of each audit chain the batch extended, as routed."""
    audited: int
    """How many audit records the batch wrote."""


class RoutingService:
    """Owns the router, the state follower and the in-flight batches of one worker process."""

    def __init__(self, app: faust.App, settings: Settings, catalog: Catalog,
                 on_failure: Callable[[BaseException], None],
                 pseudonymiser: Pseudonymiser, signer: Ed25519PrivateKey) -> None:
        self.app = app
        self.settings = settings
        self.serde = AvroSerde(clients.schema_registry(settings))
        self.router = Router(catalog, self.serde, pseudonymiser)
        self.heads = ChainHeads(settings, self.serde, catalog.bus_record("audit").latest.parsed,
                                self.router.chains)
        self.state_audit = StateAudit(settings, self.serde, catalog, pseudonymiser,
                                      lambda: self.follower.state.contracts,
                                      self.router.chains, self._state_audit_settled)
        self.follower = StateFollower(settings, self.serde, catalog, metrics.record_state_changes,
                                      metrics.record_state, self.state_audit)
        self.gate = FenceGate(self.follower)
        self.sink = BatchSink(settings)
        self.checkpointer = Checkpointer(settings, signer, catalog, self.serde)
        self.replays = ReplayReader(settings)
        self.inflight: InFlight[BatchReport] = InFlight(IN_FLIGHT_BATCHES, self._settle,
                                                        on_failure)
        self.acknowledge: Callable[[Any], Awaitable[Any]] | None = None
        self._started = asyncio.Lock()
        self._running = False
        self._starting: asyncio.Future[None] | None = None
        self._encodings_known: object = None
        """The router's last encodings whose registry ids were all cached."""
        self._on_failure = on_failure
        self._chains_written = asyncio.Lock()
        """Held from linking records to the chains' heads until they are handed to the
        producer: routing and the state audit extend the same chains, in order."""
        self._state_due = asyncio.Event()
        self.state_audit.changed = self._state_due.set
        self._state_writes: asyncio.Future[Any] | None = None
        self._given_up: set[int] = set()
        """Provider partitions revoked and not assigned again: their state is audited by
        their next owner, never by this worker meanwhile."""
        self._state_auditor: asyncio.Task[None] | None = None

    async def ensure_started(self) -> None:
        """Start following the state topics (once), before the first batch is routed."""
        async with self._started:
            if not self._running:
                await self.heads.start()  # the state audit's chains, as the follower opens
                await self.sink.start()
                await self.follower.start(self.router.catalog.provider_topics())
                await self.serde.fetch_ids([self.checkpointer.encoding])
                self._state_auditor = asyncio.create_task(self._audit_state(),
                                                          name="state-audit")
                self._running = True

    def on_assigned(self, assigned: Iterable[TP]) -> None:
        """After a rebalance another worker may have extended a chain (re-read its head), and
        may have passed fences on partitions now ours that this worker's state has not
        reached (:class:`~streams.state.fences.FenceGate`). ``assigned`` is the whole new
        assignment: the state follower holds the state partitions of its provider partitions,
        and releases the others."""
        assigned = list(assigned)
        self.gate.release((tp.topic, tp.partition) for tp in assigned)
        self.follower.hold(tp.partition for tp in assigned
                           if tp.topic.startswith(PROVIDER_PREFIX))
        self.heads.reset()
        self.checkpointer.reset()
        self._given_up.clear()
        if not self._running and self._starting is None:
            # Restore the state now rather than when the first event arrives, as Kafka Streams
            # restores a task once assigned; a failure here is raised again by the first batch.
            self._starting = asyncio.ensure_future(self.ensure_started())
            self._starting.add_done_callback(_log_start_failure)

    def on_revoked(self, revoked: Iterable[TP]) -> None:
        """Partitions given up: their next owner, maybe this worker again later, must not
        trust what this worker's state had reached for them."""
        self.gate.release((tp.topic, tp.partition) for tp in revoked)

    async def hand_over_state_audit(self, revoked: Iterable[TP]) -> None:
        """Partitions given up: audit nothing more of their state, and let what this worker
        wrote of it land before their next owner reads their chains back."""
        self._given_up |= {tp.partition for tp in revoked
                           if tp.topic.startswith(PROVIDER_PREFIX)}
        async with self._chains_written:  # a write under way is handed to the producer
            pass
        await self._state_audit_settled()

    def _audits(self, partition: int) -> bool:
        """Whether this worker audits the state of ``partition`` now."""
        return partition not in self._given_up and self.follower.holds(partition)

    async def route_batch(self, events: Sequence[Any]) -> None:
        """Route a batch and hand its records to the producer; it is settled (acknowledged to
        Faust, counted, logged) by :class:`InFlight` once everything it produced is written."""
        await self.ensure_started()
        began = time.perf_counter()
        records = await self.replays.expand(
            await self.gate.admit([_source(event.message) for event in events]))
        self.serde.forget_missing(r.value for r in records if r.replay)
        admitted = self.follower.epochs()
        fenced = time.perf_counter()
        async with self._chains_written:
            now = await self._prepared(records)
            records, events = self._held(records, events, admitted)
            outgoing = self.router.route(records, self.follower.state, now)
            routed = time.perf_counter()
            heads, audited = self._extended(records, outgoing)
            written = await self.sink.send(outgoing)
        report = BatchReport(self.router.tally.take(), records, len(outgoing), began, fenced,
                             routed, heads, audited)
        await self.inflight.add(Routed(events, written, report))

    async def _prepared(self, records: list[SourceRecord]) -> datetime:
        """Wait until the chain heads of ``records`` are known and every schema routing them
        needs is cached, and return the moment to route them at. The router is synchronous: a
        registry call there would freeze the event loop, group heartbeats and state follower
        included, so schemas are fetched here, off the loop, waiting out a registry that does
        not answer. Everything is checked again after any wait, with nothing awaited between
        the last check and routing: a rebalance forgets the heads, a contract applied meanwhile
        brings a delivery schema of its own, and the state follower's fetches may forget ids
        known to be missing."""
        values = [record.value for record in records]
        while True:
            await self.heads.ensure((r.partition for r in records), self.inflight.drain)
            now = datetime.now(UTC)
            encodings = self.router.encodings(self.follower.state, now)
            missing = ([] if encodings is self._encodings_known
                       else self.serde.unknown_ids(encodings))  # ids once cached stay cached
            if not missing and not self.serde.unknown_writers(values):
                self._encodings_known = encodings
                return now
            await self.serde.fetch_writers(values)
            await self.serde.fetch_ids(missing)

    def _held(self, records: list[SourceRecord], events: Sequence[Any],
              admitted: dict[int, int]) -> tuple[list[SourceRecord], Sequence[Any]]:
        """The records whose partition's state this worker still holds as it was when the
        batch was admitted, and the events to acknowledge with them. A rebalance while the
        batch waited may have given the others away, or away and back with their state
        restored from an older point: they are neither routed nor acknowledged, so whoever
        holds the partition now reads them again from the last offset committed."""
        now = self.follower.epochs()
        kept = {p for p, epoch in now.items() if admitted.get(p) == epoch}
        if all(e.message.partition in kept for e in events):
            return records, events
        log.info("records of partitions given away during a rebalance, left to be read again",
                 records=sum(r.partition not in kept for r in records))
        return ([r for r in records if r.partition in kept],
                [e for e in events if e.message.partition in kept])

    def _extended(self, records: list[SourceRecord], outgoing: Sequence[Outgoing]
                  ) -> tuple[dict[int, str], int]:
        """The heads of the chains a routed batch extended, taken before the next batch is
        routed, and how many audit records it wrote."""
        chains = self.router.chains
        touched = {chains.chain_of(record.partition) for record in records}
        heads = {chain: chains.heads[chain] for chain in touched if chain in chains.heads}
        return heads, sum(1 for record in outgoing if record.topic == AUDIT)

    async def _settle(self, batch: Routed[BatchReport]) -> None:
        report = batch.report
        checkpoint = self.checkpointer.written(report.heads, batch.written.result(),
                                               report.audited)
        if checkpoint is not None:
            await (await self.sink.send([checkpoint]))
        if self.acknowledge is not None:
            for event in batch.events:
                await self.acknowledge(event)
        metrics.record_batch(report.tally, report.records)
        log.info("batch routed", events=len(report.records), written=report.written,
                 **report.tally.summary(),
                 fence_ms=round((report.fenced - report.began) * 1000, 1),
                 route_ms=round((report.routed - report.fenced) * 1000, 1),
                 written_ms=round((time.perf_counter() - report.routed) * 1000, 1))

    async def _audit_state(self) -> None:
        """Write what the state audit collected, when the follower applied something and on
        a timer (a contract's end comes with no record); a failure stops the worker, as one
        in routing does: a change left unaudited would be a gap in its chain's story."""
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._state_due.wait(), ENDS_CHECKED_EVERY_S)
                self._state_due.clear()
                await self._write_state_audit()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure stops the worker, reported
            self._on_failure(exc)

    async def _write_state_audit(self) -> None:
        """Link what is due to the chains' heads and write it, with its erasure notices."""
        audit = self.state_audit
        async with self._chains_written:
            while True:
                partitions = audit.partitions(self._audits)
                if not partitions:
                    return
                await self.heads.ensure(partitions, self.inflight.drain)
                now = datetime.now(UTC)
                await self.serde.fetch_ids(audit.encodings(now))
                if {self.router.chains.chain_of(p) for p in partitions} <= (
                        self.router.chains.heads.keys()):
                    break
            chains = self.router.chains
            taken = audit.take(now, lambda p: (self._audits(p)
                                                and chains.chain_of(p) in chains.heads))
            if not taken:
                return
            outgoing = audit.outgoing(taken, chains, now)
            linked = {chain: chains.heads[chain]
                      for chain in {chains.chain_of(p.partition) for p in taken}}
            writing = await self.sink.send(outgoing)
            self._state_writes = writing
        offsets = await writing
        checkpoint = self.checkpointer.written(linked, offsets, len(taken))
        if checkpoint is not None:
            await (await self.sink.send([checkpoint]))
        log.info("state changes audited", records=len(taken),
                 notices=sum(p.notice is not None for p in taken))

    async def _state_audit_settled(self) -> None:
        """Once this worker's state audit writes in flight have landed."""
        writes = self._state_writes
        if writes is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(writes)

    async def stop(self) -> None:
        auditor, self._state_auditor = self._state_auditor, None
        if auditor is not None:
            auditor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await auditor
        if self._running:
            await self.inflight.stop()
            await self.follower.stop()
            await self.sink.stop()
            await self.replays.stop()


def _log_start_failure(started: asyncio.Future[None]) -> None:
    failure = None if started.cancelled() else started.exception()
    if failure is not None:
        log.error("the state could not be restored at assignment; the first batch tries again",
                  error=redacted_error(failure))


def _source(message: Any) -> SourceRecord:
    headers = message.headers or []
    if isinstance(headers, dict):
        headers = list(headers.items())
    return SourceRecord(message.topic, message.partition, message.offset,
                        int(message.timestamp * 1000) if message.timestamp else None,
                        message.key, message.value, list(headers))
